"""SeqIO tasks and mixtures; `import tasks` registers every built-in dataset.

One module per dataset (cqa, cose, svamp, nli = anli1 + esnli, gsm8k, asdiv); names, mixtures
and rates: tasks/registry.py; gin settings: tasks/config.py. Custom JSONL datasets:
`tasks.custom.register_jsonl_dataset`. Span-corruption pretraining: tasks/pretrain.py.
"""
from t5x_sbs.tasks import paper  # noqa: F401  (registers the built-in datasets)
from t5x_sbs.tasks import pretrain  # noqa: F401  (span-corruption pretraining tasks)
from t5x_sbs.tasks.custom import register_jsonl_dataset  # noqa: F401

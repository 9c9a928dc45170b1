"""SeqIO tasks and mixtures (installed as `t5x_sbs.tasks`); importing it registers nothing.

One module per dataset (cqa, cose, svamp, nli = anli1 + esnli, gsm8k, asdiv), each with a
`register()`; `catalog.register_all()` registers them all. Names, mixtures and rates:
tasks/registry.py; gin settings: tasks/config.py (gin names `tasks.config.*`). Custom JSONL
datasets: `tasks.custom.register_jsonl_dataset`. Span-corruption pretraining: tasks/pretrain.py.
"""

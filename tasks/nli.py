"""NLI: ANLI round 1 (`anli1`) and e-SNLI (`esnli`). Input `premise</s>hypothesis` (the paper's
EOS join), label entailment | neutral | contradiction, scored by accuracy. Both have validation
files; their train inputs are not in ../shared/data: read them from a prepared TFDS dataset with
`tasks.config.tfds_data_dirs.dirs = {'esnli': DIR, 'anli1': DIR}` and a teacher store."""
from t5x_sbs.tasks.registry import builtin_spec, register_dataset

METRIC = "accuracy"
TASKS = {name: register_dataset(builtin_spec(name, METRIC)) for name in ("anli1", "esnli")}

"""NLI: ANLI round 1 (`anli1`) and e-SNLI (`esnli`). Input `premise</s>hypothesis` (the paper's
EOS join), label entailment | neutral | contradiction, scored by accuracy. Both have validation
files; their train inputs are not in ../shared/data: read them from a prepared TFDS dataset with
`tasks.config.tfds_data_dirs.dirs = {'esnli': DIR, 'anli1': DIR}` and a teacher store."""
import functools

from t5x_sbs.tasks.registry import builtin_spec, register_dataset

METRIC = "accuracy"


@functools.cache
def register() -> dict[str, dict[str, list[str]]]:
    """Registers the anli1 and esnli tasks and mixtures once; returns their names per dataset."""
    return {name: register_dataset(builtin_spec(name, METRIC)) for name in ("anli1", "esnli")}

"""SVAMP: input `Body\\nQuestion`, label an equation such as `( 10.0 * 45.0 )`, scored by value
with the safe evaluator (`metrics.equation_accuracy`); teacher: the paper's PaLM outputs.
ASDiv as extra unlabeled training problems: see tasks/asdiv.py (`svamp_asdiv_*` mixtures)."""
import functools

from t5x_sbs.tasks.registry import builtin_spec, register_dataset

METRIC = "equation"


@functools.cache
def register() -> dict[str, list[str]]:
    """Registers the svamp tasks and mixtures once; returns their names."""
    return register_dataset(builtin_spec("svamp", METRIC))

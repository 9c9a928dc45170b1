"""CommonsenseQA (the paper's `cqa`): input `question\\nAnswer Choices:\\n(a) ...`, label the
answer text, scored by accuracy; teacher: the paper's PaLM outputs unless a store is bound."""
import functools

from t5x_sbs.tasks.registry import builtin_spec, register_dataset

METRIC = "accuracy"


@functools.cache
def register() -> dict[str, list[str]]:
    """Registers the cqa tasks and mixtures once; returns their names."""
    return register_dataset(builtin_spec("cqa", METRIC))

"""CoS-E v1.11: CQA's inputs and labels, with the human explanation in `input['cose_explanation']`
(for comparing human against LLM rationales); teacher as CQA's (its PaLM outputs)."""
import functools

from t5x_sbs.tasks.registry import builtin_spec, register_dataset

METRIC = "accuracy"


@functools.cache
def register() -> dict[str, list[str]]:
    """Registers the cose tasks and mixtures once; returns their names."""
    return register_dataset(builtin_spec("cose", METRIC))

"""CoS-E v1.11: CQA's inputs and labels, with the human explanation in `input['cose_explanation']`
(for comparing human against LLM rationales); teacher as CQA's (its PaLM outputs)."""
from t5x_sbs.tasks.registry import builtin_spec, register_dataset

METRIC = "accuracy"
TASKS = register_dataset(builtin_spec("cose", METRIC))

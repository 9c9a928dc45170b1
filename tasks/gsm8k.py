"""GSM8K: input the question, label the final number after `####`, scored by number match
(`metrics.gsm8k_accuracy`). No stored PaLM outputs: the `gsm8k_label_llm`/`gsm8k_rationale_llm`
tasks (and the *_llm / sbs mixtures) read a teacher store, bound in gin:
    tasks.config.teacher_files.files = {'gsm8k': 'stores/gsm8k.jsonl'}
written by `t5x-sbs rationales` (Gemini) or imported from a third-party set
(`python -m t5x_sbs.teacher.eitnlp --dataset gsm8k ...`)."""
import functools

from t5x_sbs.tasks.registry import builtin_spec, register_dataset

METRIC = "gsm8k"


@functools.cache
def register() -> dict[str, list[str]]:
    """Registers the gsm8k tasks and mixtures once; returns their names."""
    return register_dataset(builtin_spec("gsm8k", METRIC))

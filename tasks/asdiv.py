"""ASDiv: 2,305 math word problems, in the paper extra *unlabeled* training data for SVAMP.

Input `Body\\nQuestion`; all problems are `train` (10% carved out as validation), gold = the
numeric answer, scored by value. Its *_llm tasks need a teacher store (no PaLM outputs here):
    tasks.config.teacher_files.files = {'asdiv': 'stores/asdiv.jsonl', 'svamp': ...}
The mixtures `svamp_asdiv_{standard,sbs}_{gold,llm}` are SVAMP's mixture plus `asdiv_label_llm`
(and `asdiv_rationale_llm` for sbs): train on them, evaluate on the `svamp_*` tasks. With
`tasks.config.mixture_rates.mode = 'examples'` every problem is drawn equally often (a
concatenation, as the paper's code does); the default rates each task 1.
"""
import functools

from t5x_sbs.tasks import svamp
from t5x_sbs.tasks.registry import builtin_spec, register_augmented_mixtures, register_dataset

METRIC = "equation"


@functools.cache
def register() -> dict[str, list[str]]:
    """Registers the asdiv tasks once; returns their names."""
    return register_dataset(builtin_spec("asdiv", METRIC))


@functools.cache
def register_svamp_mixtures() -> dict[str, list[str]]:
    """Registers the svamp_asdiv_* mixtures (SVAMP's and ASDiv's tasks first); returns their names."""
    svamp.register()
    register()
    return register_augmented_mixtures("svamp", "asdiv")

"""The built-in datasets and how to register them: importing a tasks module registers nothing.

`register_all()` registers every built-in dataset's tasks and mixtures (and the span-corruption
pretraining tasks) once, and returns dataset -> names; the trainer's input pipeline, evaluation and
the experiments call it before they ask SeqIO for a task. Custom JSONL datasets register through
`tasks.custom.register_jsonl_dataset`.
"""
from __future__ import annotations

import functools

from t5x_sbs.tasks import asdiv, cose, cqa, gsm8k, nli, pretrain, svamp

BUILTIN_METRICS = {"cqa": cqa.METRIC, "cose": cose.METRIC, "svamp": svamp.METRIC, "anli1": nli.METRIC,
                   "esnli": nli.METRIC, "gsm8k": gsm8k.METRIC, "asdiv": asdiv.METRIC}


@functools.cache
def register_all() -> dict:
    """Every built-in dataset's names (registered on the first call), plus "pretrain"."""
    return {"cqa": cqa.register(), "cose": cose.register(), "svamp": svamp.register(), **nli.register(),
            "gsm8k": gsm8k.register(), "asdiv": asdiv.register(), "svamp_asdiv": asdiv.register_svamp_mixtures(),
            "pretrain": pretrain.register()}

"""Packed row lengths from the data: feature lengths chosen from a task's token-length percentiles.

A packed row pays attention over its whole length, however few tokens each example has: rows of
512 + 256 tokens holding CQA examples of ~50 tokens spend most of the attention work on pairs
that the segment mask zeroes out. Rows a few examples long keep packing tight and that waste small.

    from t5x_sbs.tasks import lengths
    stats = lengths.token_lengths("cqa_sbs_llm")                     # per feature, train split
    lengths.pack_lengths(stats)                                      # {'inputs': 128, 'targets': 96}

or from the shell, `t5x-sbs pack-lengths cqa_sbs_llm --spm_path spiece.model` prints the
percentiles and the suggested `TASK_FEATURE_LENGTHS` for gin. benchmarks/sbs_throughput.py measures
what such rows gain over 512 + 256.
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping

import numpy as np
import seqio

FEATURES = ("inputs", "targets")


def token_lengths(name: str, split: str = "train", limit: int | None = None) -> dict[str, np.ndarray]:
    """Token count of every row's `inputs` and `targets` (EOS included, nothing truncated) of a
    SeqIO task or of every task of a mixture, in order; `limit` rows per task at most."""
    provider = seqio.get_mixture_or_task(name)
    out = {f: [] for f in FEATURES}
    for task in getattr(provider, "tasks", [provider]):
        ds = task.get_dataset(sequence_length=None, split=split, shuffle=False)
        if limit is not None:
            ds = ds.take(limit)
        for row in ds.as_numpy_iterator():
            for feature in FEATURES:
                out[feature].append(len(row[feature]))
    if not out["inputs"]:
        raise ValueError(f"{name} {split}: no rows to measure")
    return {f: np.asarray(v, np.int64) for f, v in out.items()}


def round_up(value: float, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


def pack_lengths(lengths: Mapping[str, Iterable[int]], *, percentile: float = 99.0, rows_per_pack: float = 2.0,
                 multiple: int = 16, cap: Mapping[str, int] | None = None) -> dict[str, int]:
    """Feature lengths for packing: per feature, room for `rows_per_pack` rows of mean length and
    at least one row at `percentile` (so that few rows are truncated), rounded up to `multiple`
    (hardware-friendly shapes) and capped at `cap` (e.g. the model's maximum)."""
    if rows_per_pack <= 0 or not 0 < percentile <= 100 or multiple <= 0:
        raise ValueError(f"pack_lengths: rows_per_pack {rows_per_pack} must be > 0, percentile {percentile} "
                         f"in (0, 100], multiple {multiple} > 0")
    out = {}
    for feature, values in lengths.items():
        values = np.asarray(list(values))
        length = max(np.percentile(values, percentile), rows_per_pack * values.mean())
        out[feature] = round_up(length, multiple)
        if cap and feature in cap:
            out[feature] = min(out[feature], int(cap[feature]))
    return out


def summary(lengths: Mapping[str, np.ndarray], percentiles=(50, 90, 99, 100)) -> dict[str, dict[str, float]]:
    return {f: {"mean": float(np.mean(v)), **{f"p{p}": float(np.percentile(v, p)) for p in percentiles}}
            for f, v in lengths.items()}

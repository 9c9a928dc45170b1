"""Confidence intervals for the main job's tables (scipy and numpy; scipy comes with jax).

- `mean_ci`: a method's mean test accuracy over seeds with a 95 % Student-t interval.
- `paired_bootstrap`: the difference of two methods on the *same* test questions. Per question,
  each method's correctness is averaged over its seeds; the questions are resampled (paired:
  one draw picks a question for both methods) to give the difference's 95 % percentile interval
  and a two-sided p-value (twice the smaller tail of the bootstrap differences around 0).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
from scipy import stats


@dataclasses.dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        if self.n < 2:
            return f"{100 * self.mean:.1f}"
        return f"{100 * self.mean:.1f} ± {100 * (self.high - self.mean):.1f}"


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """Mean and Student-t interval over seeds (n = 1: the value itself, no interval)."""
    values = np.asarray(values, float)
    mean = float(values.mean())
    if len(values) < 2:
        return Interval(mean, mean, mean, len(values))
    half = float(stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values)))
    return Interval(mean, mean - half, mean + half, len(values))


@dataclasses.dataclass(frozen=True)
class PairedDifference:
    difference: float  # mean over questions of (method a − method b), seeds averaged
    low: float
    high: float
    p_value: float
    questions: int
    seeds: tuple[int, int]
    resamples: int = 10000

    def __str__(self) -> str:
        # No resample on the other side of 0: the bootstrap bounds p by its resolution, it is not 0.
        p = f"p < {2 / self.resamples:.1g}" if self.p_value == 0 else f"p = {self.p_value:.3g}"
        return (f"{100 * self.difference:+.1f} points, 95 % CI [{100 * self.low:+.1f}, {100 * self.high:+.1f}], "
                f"{p} (paired bootstrap over {self.questions} test questions, "
                f"{self.seeds[0]} vs {self.seeds[1]} seeds)")


def paired_bootstrap(correct_a: np.ndarray, correct_b: np.ndarray, *, resamples: int = 10000,
                     seed: int = 0, confidence: float = 0.95) -> PairedDifference:
    """`correct_x`: [seeds, questions] 0/1 arrays, the same questions in the same order."""
    a, b = np.atleast_2d(np.asarray(correct_a, float)), np.atleast_2d(np.asarray(correct_b, float))
    if a.shape[1] != b.shape[1] or a.shape[1] == 0:
        raise ValueError(f"paired test needs the same test questions: {a.shape[1]} vs {b.shape[1]}")
    per_question = a.mean(axis=0) - b.mean(axis=0)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(per_question), size=(resamples, len(per_question)))
    means = per_question[draws].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    p = min(1.0, 2 * min(np.mean(means <= 0), np.mean(means >= 0))) if per_question.any() else 1.0
    return PairedDifference(float(per_question.mean()), float(low), float(high), float(p), len(per_question),
                            (a.shape[0], b.shape[0]), resamples)

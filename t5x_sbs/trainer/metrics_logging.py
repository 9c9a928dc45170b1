"""Training metrics: MODEL_DIR/metrics.jsonl, TensorBoard (clu writers), progress (`progress`), tokens/s, MFU.

MFU = model FLOPs per second / (devices x PEAK_FLOPS_PER_DEVICE), with the 6·N·tokens rule
applied per stack (an encoder token touches only encoder weights): 6·(N_enc·enc_tokens +
N_dec·dec_tokens), N_dec including the shared/output embedding. Attention-score FLOPs are
left out, as in the usual 6ND estimate.
"""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Mapping

import jax
import numpy as np
from clu import metric_writers

from t5x_sbs.models.info import count_params
from t5x_sbs.progress import progress

log = logging.getLogger(__name__)


def stack_param_counts(params: Any) -> tuple[int, int]:
    """(encoder params, decoder + embedding params)."""
    enc = count_params(params.get("encoder", {}))
    return enc, count_params(params) - enc


def flops_per_step(params: Any, batch_size: int, input_length: int, target_length: int) -> float:
    enc, dec = stack_param_counts(params)
    return 6.0 * batch_size * (enc * input_length + dec * target_length)


def _writer(model_dir: str):
    """clu's default writer: TensorBoard events from process 0, plain logging on the others."""
    return metric_writers.create_default_writer(model_dir, just_logging=jax.process_index() != 0)


class MetricsLogger:
    """Writes one JSON object per logged step (process 0 only) and the same scalars to TB."""

    def __init__(self, model_dir: str, *, flops_per_step: float, tokens_per_step: int,
                 peak_flops_per_device: float | None, total_steps: int, initial_step: int = 0):
        self.primary = jax.process_index() == 0
        self.path = os.path.join(model_dir, "metrics.jsonl")
        self.flops_per_step, self.tokens_per_step = flops_per_step, tokens_per_step
        self.peak = peak_flops_per_device
        self.writer = _writer(model_dir)
        # a bar on a terminal, a line every T5X_SBS_PROGRESS_SECONDS in a log file
        self.bar = progress(total_steps, initial=initial_step, disable=not self.primary, desc="train", unit="step")
        self._last = (initial_step, time.perf_counter())
        self._off_nominal = [0.0, 0.0]  # tokens, FLOPs of steps not of the nominal shape (length buckets)

    def count_step(self, tokens: int, flops: float) -> None:
        """A step of another shape than the nominal one: throughput counts its own tokens and FLOPs."""
        self._off_nominal[0] += tokens - self.tokens_per_step
        self._off_nominal[1] += flops - self.flops_per_step

    def throughput(self, step: int) -> dict[str, float]:
        """tokens/s and MFU since the previous call."""
        last_step, last_time = self._last
        now = time.perf_counter()
        self._last = (step, now)
        seconds = max(now - last_time, 1e-9)
        steps = max(step - last_step, 0)
        (tokens, flops), self._off_nominal = self._off_nominal, [0.0, 0.0]
        tokens += self.tokens_per_step * steps
        flops += self.flops_per_step * steps
        out = {"tokens_per_second": tokens / seconds, "seconds_per_step": seconds / max(steps, 1)}
        if self.peak:
            out["mfu"] = flops / seconds / (jax.device_count() * self.peak)
        return out

    def write(self, step: int, metrics: Mapping[str, Any], *, prefix: str = "") -> None:
        scalars = {f"{prefix}{k}": float(np.asarray(v)) for k, v in metrics.items()}
        if self.primary:
            with open(self.path, "a") as f:
                f.write(json.dumps({"step": int(step), **scalars}) + "\n")
        self.writer.write_scalars(int(step), scalars)

    def advance(self, n: int, **postfix) -> None:
        self.bar.update(n)
        if postfix:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()})

    def close(self) -> None:
        self.bar.close()
        self.writer.flush()

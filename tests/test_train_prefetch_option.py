"""RunConfig.prefetch_batches: 0 builds the host batches on the main thread (what
benchmarks/prefetch_throughput.py compares with the default thread); the run is otherwise the same."""
from __future__ import annotations

import pytest

from t5x_sbs.trainer import train_loop
from test_trainer_loop import read_jsonl, run_train, svamp_bindings
from trainer_fixtures import preempt_after

STEPS = 3


@pytest.mark.shared_data
def test_training_without_the_prefetch_thread_gives_the_same_losses(tmp_path, shared_data, monkeypatch):
    import jax

    from t5x_sbs.experiments.runner import enable_compilation_cache

    preempt_after(STEPS, monkeypatch)
    previous = jax.config.jax_compilation_cache_dir
    enable_compilation_cache(str(tmp_path / "jax_cache"))  # the second run reuses the first's step
    losses = {}
    for prefetch in (2, 0):
        model_dir = tmp_path / f"prefetch_{prefetch}"
        out = run_train(svamp_bindings(model_dir, shared_data, 100, **{"RunConfig.prefetch_batches": prefetch}))
        assert out["step"] == STEPS
        losses[prefetch] = [x["loss"] for x in read_jsonl(model_dir / "metrics.jsonl") if "loss" in x]
    jax.config.update("jax_compilation_cache_dir", previous)
    assert len(losses[0]) == STEPS and losses[0] == losses[2]


def test_prefetch_batches_must_not_be_negative():
    with pytest.raises(ValueError, match="prefetch_batches must be an integer >= 0"):
        train_loop.RunConfig(model_dir="m", mixture_or_task_name="t", prefetch_batches=-1)

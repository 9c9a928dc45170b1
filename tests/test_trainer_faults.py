"""Faults: a SIGTERM'd run resumes to bit-identical parameters; a NaN loss stops with a clear message
and leaves the last good checkpoint."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import gin
import jax
import numpy as np
import pytest

from t5x_sbs import checkpoints, main
from t5x_sbs.trainer import train_loop
from test_trainer_loop import run_train, svamp_bindings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 10
QUIET = {"EVAL_EVERY": 1000, "CHECKPOINT_EVERY": 1000, "RunConfig.test_batches": 1}


def final_params(model_dir):
    step_dir = checkpoints.resolve_step_dir(model_dir)
    tree = checkpoints.state_metadata(step_dir)
    leaves = jax.tree_util.tree_flatten_with_path(tree["params"])[0]
    return int(step_dir.name), {jax.tree_util.keystr(p): checkpoints.read_state_leaf(step_dir, ("params",) + tuple(
        k.key for k in p)) for p, _ in leaves}


def _wait_for_step(path, step, proc, deadline):
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(path):
            with open(path) as f:
                if any(json.loads(line).get("step", 0) >= step for line in f if line.strip()):
                    return True
        time.sleep(0.05)
    return False


@pytest.mark.fault
@pytest.mark.shared_data
def test_sigterm_then_resume_is_bit_identical(tmp_path, shared_data):
    killed_dir, whole_dir = tmp_path / "killed", tmp_path / "whole"
    flags = [f"--gin.{b.replace(' = ', '=', 1)}" for b in svamp_bindings(killed_dir, shared_data, STEPS, **QUIET)]
    cmd = [sys.executable, "-m", "t5x_sbs.main", "--run_mode=train", "--gin_file=gin/models/t5_1_1/tiny.gin",
           "--gin_file=gin/runs/sbs.gin", *flags]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for_step(killed_dir / "metrics.jsonl", 3, proc, time.time() + 300), "run never reached step 3"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert "preempted: saved step" in err
    stopped = checkpoints.CheckpointManager(killed_dir).latest_step()
    assert 3 <= stopped < STEPS, stopped
    assert checkpoints.read_json_item(killed_dir / str(stopped), "data_state")["batches_consumed"] == stopped

    run_train(svamp_bindings(killed_dir, shared_data, STEPS, **QUIET))  # resume in this process
    run_train(svamp_bindings(whole_dir, shared_data, STEPS, **QUIET))  # uninterrupted
    (step_a, resumed), (step_b, whole) = final_params(killed_dir), final_params(whole_dir)
    assert step_a == step_b == STEPS and resumed.keys() == whole.keys()
    for name in whole:
        np.testing.assert_array_equal(resumed[name], whole[name], err_msg=name)


@pytest.mark.fault
@pytest.mark.shared_data
def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, shared_data):
    # An absurd AdamW rate blows the parameters up within a few steps; every step is checkpointed.
    bindings = svamp_bindings(tmp_path, shared_data, 20, CHECKPOINT_EVERY=1, EVAL_EVERY=1000) + [
        "OptimizerConfig.name = 'adamw'", "OptimizerConfig.learning_rate = 1e12"]
    # The gradient norm is checked too: it may be the first to go non-finite.
    with pytest.raises(train_loop.NonFiniteLossError, match=r"(loss|gradient norm) is (nan|inf)( and gradient norm is "
                                                            r"(nan|inf))? at step (\d+).*Last good checkpoint: "
                                                            r"step (\d+)") as info:
        run_train(bindings)
    bad_step = int(info.value.args[0].split(" at step ")[1].split(":")[0])
    good = checkpoints.CheckpointManager(tmp_path).latest_step()
    assert good == bad_step - 1 and f"step {good} in" in str(info.value)
    _, params = final_params(tmp_path)
    assert all(np.isfinite(p).all() for p in params.values())  # the kept step is a good one

"""benchmarks/gpu_check.py --dry_run: the GPU check's every part runs on CPU with a tiny model
(the step compiled as precompile does and timed; a real train-loop run checkpointed at step 4,
resumed to 8, and compared with an uninterrupted run to 8), printing one JSON object."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.distributed
def test_dry_run_prints_one_json_with_every_figure():
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one device per part
    proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--dry_run"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=400)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and len(lines) == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(lines[0])
    assert out["ok"] is True and out["dry_run"] is True
    tiny = out["throughput"]["tiny"]
    assert tiny["hardware_gin"] == "gin/hardware/cpu.gin" and tiny["peak_flops_per_device"] == 1e11
    assert tiny["tokens_per_s"] == pytest.approx(8 * (32 + 16) / tiny["step_s"])
    assert 0 < tiny["mfu"] < 1 and tiny["estimated_device_bytes"] > 4 * tiny["params"]
    assert tiny["peak_device_bytes"] is None  # the CPU backend keeps no allocator statistics
    resume = out["resume"]
    assert resume["steps"] == 8 and resume["logged_steps"] == [4, 8]
    assert resume["resume_equal"] is True
    assert resume["second_half"]["loss"] == resume["uninterrupted"]["loss"] != resume["first_half"]["loss"]

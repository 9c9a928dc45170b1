"""t5x_sbs.trainer.distributed: where multi-process settings come from, and a real 2-process start-up."""
import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest
from ports import free_port_pair

from t5x_sbs.trainer import distributed

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_single_process_is_a_no_op():
    assert distributed.detect({}) is None
    assert distributed.detect({"JAX_NUM_PROCESSES": "1"}) is None
    assert distributed.detect({"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}) is None
    assert distributed.maybe_initialize(environ={}) is None


def test_flags_win_over_environment():
    env = {"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}
    group = distributed.detect(env, coordinator_address="c:9", num_processes=2, process_id=1)
    assert (group.source, group.coordinator_address, group.num_processes, group.process_id) == (
        "flags", "c:9", 2, 1)
    group = distributed.detect(env)
    assert (group.source, group.coordinator_address, group.num_processes, group.process_id) == (
        "env", "h:1", 4, 3)


def test_slurm_and_tpu_defer_to_jax_cluster_detection():
    slurm = {"SLURM_NTASKS": "16", "SLURM_PROCID": "5", "SLURM_JOB_ID": "1"}
    group = distributed.detect(slurm)
    assert group.source == "slurm" and group.cluster_detection_method == "slurm"
    assert (group.num_processes, group.process_id) == (16, 5)
    tpu = distributed.detect({"TPU_WORKER_HOSTNAMES": "t0,t1,t2,t3"})
    assert tpu.source == "tpu" and tpu.cluster_detection_method == "gcetpu"
    assert distributed.detect({"TPU_WORKER_HOSTNAMES": "localhost"}) is None


@pytest.mark.parametrize("env, message", [
    ({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"}, "coordinator_address"),
    ({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2", "JAX_COORDINATOR_ADDRESS": "h:1"}, "not in [0, 2)"),
    ({"JAX_NUM_PROCESSES": "two"}, "JAX_NUM_PROCESSES='two'"),
    ({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0", "JAX_COORDINATOR_ADDRESS": "h"}, "host:port"),
])
def test_bad_settings_name_the_problem(env, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        distributed.detect(env)


WORKER = """
import jax, jax.numpy as jnp, numpy as np
from t5x_sbs.trainer import distributed
group = distributed.maybe_initialize()
assert distributed.maybe_initialize() == group  # idempotent
mesh = jax.make_mesh((jax.device_count(),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
local = np.full((jax.local_device_count(),), jax.process_index() + 1.0, np.float32)
x = jax.make_array_from_process_local_data(sharding, local)
total = jax.jit(jnp.sum, out_shardings=jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))(x)
print("RESULT", group.source, jax.process_index(), jax.process_count(), jax.device_count(), float(total))
"""


@pytest.mark.distributed
def test_two_processes_join_with_the_environment_local_sh_sets():
    """local.sh --processes=2 --devices=2: each worker's env, with a probe instead of the trainer."""
    dry = subprocess.run(
        ["bash", str(REPO / "launch/local.sh"), "--dry_run", "--processes=2", "--devices=2",
         f"--port={free_port_pair()}", "--gin_file=unused.gin"],
        capture_output=True, text=True, check=True, timeout=30).stdout
    commands = [shlex.split(line) for line in dry.splitlines() if line.startswith("env ")]
    procs = []
    for argv in commands:
        env = dict(os.environ)
        for word in argv[1:]:  # `env A=1 B=2 python ...`: take the assignments
            if "=" not in word or word.startswith(("-", "/")):
                break
            env.update([word.split("=", 1)])
        env.pop("CUDA_VISIBLE_DEVICES", None)
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER], env=env, cwd=REPO,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=120)
        finally:
            proc.kill()
        assert proc.returncode == 0, err[-2000:]
        outs.append(next(line for line in out.splitlines() if line.startswith("RESULT")).split())
    # Process i contributes (i + 1) on each of its 2 devices: 2*1 + 2*2 = 6.
    assert sorted(o[2] for o in outs) == ["0", "1"]
    assert all(o[1] == "env" and o[3:] == ["2", "4", "6.0"] for o in outs)

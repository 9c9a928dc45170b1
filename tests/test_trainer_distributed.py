"""Two JAX processes on localhost (gloo CPU collectives) train the tiny model on one mesh, save an
Orbax checkpoint together, and agree with each other and with a one-process run of the same
global batches. Run as a script, this file is one worker process."""
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from ports import free_port_pair

REPO = pathlib.Path(__file__).resolve().parents[1]
NUM_PROCESSES, DEVICES_PER_PROCESS = 2, 2
CHECKPOINT_STEP = 3
WORKER_TIMEOUT_S = 420  # two compiles sharing 2 busy cores; a lost peer aborts the other in ~15 s


def _flat(tree) -> dict[str, np.ndarray]:
    import jax

    return {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def worker(port: int, process_id: int, out_dir: pathlib.Path) -> None:
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    from t5x_sbs import checkpoints
    from t5x_sbs.trainer import distributed
    from t5x_sbs.trainer import partitioning as pt
    from trainer_fixtures import MESH_STEPS, mesh_run

    distributed.maybe_initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=NUM_PROCESSES,
                                 process_id=process_id)
    assert jax.process_count() == NUM_PROCESSES and jax.device_count() == NUM_PROCESSES * DEVICES_PER_PROCESS
    # fsdp spans the processes (params and batch split between them), model stays within one.
    losses, params, initial, state = mesh_run(pt.MeshConfig(1, -1, DEVICES_PER_PROCESS))
    with checkpoints.CheckpointManager(out_dir / "ckpt") as manager:
        manager.save(CHECKPOINT_STEP, state, data_state={"batches_consumed": MESH_STEPS}, force=True)
    np.savez(out_dir / f"process_{process_id}.npz", losses=np.asarray(losses),
             **{"params" + k: v for k, v in _flat(params).items()},
             **{"initial" + k: v for k, v in _flat(initial.params).items()})


def _start_workers(out_dir: pathlib.Path) -> list[tuple[subprocess.Popen, pathlib.Path]]:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={DEVICES_PER_PROCESS}",
           "JAX_PLATFORMS": "cpu", "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    port, workers = free_port_pair(), []
    for i in range(NUM_PROCESSES):
        log = out_dir / f"process_{i}.log"  # a file, not a pipe: nobody reads while we compute
        with open(log, "w") as f:
            proc = subprocess.Popen([sys.executable, __file__, str(port), str(i), str(out_dir)], cwd=REPO,
                                    env=env, stdout=f, stderr=subprocess.STDOUT)
        workers.append((proc, log))
    return workers


def _kill(workers) -> None:
    for proc, _ in workers:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _finish_workers(workers) -> None:
    failures = []
    try:
        for i, (proc, log) in enumerate(workers):
            try:
                proc.wait(timeout=WORKER_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                failures.append(f"process {i} timed out after {WORKER_TIMEOUT_S} s")
                break
            if proc.returncode != 0:
                failures.append(f"process {i} exited {proc.returncode}:\n{log.read_text()[-3000:]}")
    finally:
        _kill(workers)
    assert not failures, "\n".join(failures)


@pytest.mark.distributed
def test_two_processes_train_checkpoint_and_agree_with_one_process(tmp_path):
    import jax
    from t5x_sbs import checkpoints
    from t5x_sbs.trainer import partitioning as pt
    from trainer_fixtures import LOSS_RTOL, MESH_STEPS, PARAM_ATOL, PARAM_RTOL, mesh_trainer, reference_run

    workers = _start_workers(tmp_path)
    try:
        ref = reference_run()  # the one-process run, computed while the workers run
    except BaseException:
        _kill(workers)
        raise
    _finish_workers(workers)
    runs = [dict(np.load(tmp_path / f"process_{i}.npz")) for i in range(NUM_PROCESSES)]
    for key in runs[0]:  # one program, replicated results: the processes agree bit for bit
        np.testing.assert_array_equal(runs[1][key], runs[0][key], err_msg=key)

    np.testing.assert_allclose(runs[0]["losses"], ref["losses"], rtol=LOSS_RTOL)
    ref_params, ref_initial = _flat(ref["params"]), _flat(ref["initial"].params)
    for key, value in ref_params.items():
        np.testing.assert_array_equal(runs[0]["initial" + key], ref_initial[key], err_msg=key)  # same init
        np.testing.assert_allclose(runs[0]["params" + key], value, rtol=PARAM_RTOL, atol=PARAM_ATOL, err_msg=key)

    # The checkpoint both processes wrote restores onto one device with the params they trained.
    _, trainer = mesh_trainer(pt.MeshConfig(1, 1, 1), jax.devices()[:1])
    manager = checkpoints.CheckpointManager(tmp_path / "ckpt")
    assert manager.latest_step() == CHECKPOINT_STEP
    state, data_state = manager.restore(trainer.abstract_state())
    manager.close()
    assert int(state.step) == MESH_STEPS and data_state == {"batches_consumed": MESH_STEPS}
    for key, value in _flat(state.params).items():
        np.testing.assert_array_equal(value, runs[0]["params" + key], err_msg=key)


if __name__ == "__main__":
    worker(int(sys.argv[1]), int(sys.argv[2]), pathlib.Path(sys.argv[3]))

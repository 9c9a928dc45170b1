"""Orbax checkpoints: async round trip, keep-K, best, torn steps, any-mesh restore, preemption."""
import dataclasses
import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

from t5x_sbs.checkpoints import initial_params, model_files
from t5x_sbs.trainer import preemption
from t5x_sbs import checkpoints as ck

REPO = pathlib.Path(__file__).resolve().parents[1]


def make_state(seed=0, step=0):
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    params = {"encoder": {"kernel": jax.random.normal(k1, (8, 16))},
              "token_embedder": {"embedding": jax.random.normal(k2, (16, 8))}}
    return {"params": params, "opt_state": {"v": jnp.full((8,), float(seed))},
            "step": jnp.asarray(step, jnp.int32)}


def abstract_of(tree, sharding_fn):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding_fn(x)), tree)


def single_device(x):
    return jax.sharding.SingleDeviceSharding(jax.devices()[0])


def assert_tree_equal(a, b):
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a, b)


def test_async_round_trip_with_data_state_and_metrics(tmp_path):
    state = make_state(1, step=7)
    mgr = ck.CheckpointManager(tmp_path, save_interval_steps=1, max_to_keep=3)
    assert mgr.save(7, state, data_state={"epoch": 1, "position": 123}, metrics={"loss": jnp.float32(2.5)})
    mgr.wait_until_finished()
    assert mgr.latest_step() == 7
    assert (tmp_path / "7" / ck.COMMIT_FILE).is_file()
    restored, data_state = mgr.restore(abstract_of(state, single_device))
    assert_tree_equal(restored, state)
    assert data_state == {"epoch": 1, "position": 123}
    assert mgr.metrics(7) == {"loss": 2.5}
    mgr.close()
    # a fresh manager (a resumed run) sees the same
    again = ck.CheckpointManager(tmp_path, save_interval_steps=1, max_to_keep=3)
    assert again.latest_step() == 7
    again.close()


def test_interval_keep_k_and_force(tmp_path):
    with ck.CheckpointManager(tmp_path, save_interval_steps=2, max_to_keep=2) as mgr:
        started = [mgr.save(s, make_state(s, s)) for s in range(1, 8)]
        assert started == [False, True, False, True, False, True, False]
        assert mgr.save(7, make_state(7, 7), force=True)
        assert not mgr.save(7, make_state(7, 7), force=True)  # already there: no second save
        mgr.wait_until_finished()
        assert mgr.all_steps() == [6, 7]
        restored, _ = mgr.restore(abstract_of(make_state(), single_device), step=6)
        assert_tree_equal(restored, make_state(6, 6))


def test_best_is_kept_apart_from_keep_k(tmp_path):
    with ck.CheckpointManager(tmp_path, save_interval_steps=1, max_to_keep=1) as mgr:
        for step, acc in [(1, 0.5), (2, 0.3), (3, 0.7), (4, 0.6), (5, float("nan"))]:
            mgr.save(step, make_state(step, step))
            mgr.save_best(step, make_state(step, step)["params"], acc, mode="max")
        mgr.wait_until_finished()
        assert mgr.best_step() == 3
        assert mgr.all_steps() == [5]
        assert ck.complete_steps(tmp_path / "best") == [3]
        params, _ = mgr.restore_best(abstract_of(make_state()["params"], single_device))
        assert_tree_equal(params, make_state(3)["params"])
        with pytest.raises(ValueError, match="mode"):
            mgr.save_best(6, make_state()["params"], 0.9, mode="min")
    with ck.CheckpointManager(tmp_path, save_interval_steps=1) as resumed:  # best survives restarts
        assert resumed.best_step() == 3
        assert not resumed.save_best(6, make_state()["params"], 0.65)


def _save_steps(directory, steps):
    with ck.CheckpointManager(directory, save_interval_steps=1, max_to_keep=5) as mgr:
        for s in steps:
            mgr.save(s, make_state(s, s), data_state={"pos": s})


@pytest.mark.fault
@pytest.mark.parametrize("damage", ["truncate", "delete_file", "no_orbax_metadata", "tmp_dir"])
def test_torn_checkpoint_is_skipped(tmp_path, damage):
    _save_steps(tmp_path, [1, 2])
    step2 = tmp_path / "2"
    if damage == "truncate":
        biggest = max((p for p in step2.rglob("*") if p.is_file() and p.name != ck.COMMIT_FILE),
                      key=lambda p: p.stat().st_size)
        biggest.write_bytes(biggest.read_bytes()[: biggest.stat().st_size // 2])
    elif damage == "delete_file":
        next(p for p in (step2 / "state").rglob("*") if p.is_file() and "ocdbt" in str(p)).unlink()
    elif damage == "no_orbax_metadata":
        (step2 / ck.ORBAX_STEP_METADATA).unlink()
    else:  # a write killed before Orbax's atomic rename leaves only a tmp dir
        os.replace(step2, tmp_path / "2.orbax-checkpoint-tmp-1234")
    assert ck.incomplete_reason(step2) is not None
    mgr = ck.CheckpointManager(tmp_path, save_interval_steps=1, max_to_keep=5)
    assert mgr.latest_step() == 1
    state, data_state = mgr.restore(abstract_of(make_state(), single_device))
    assert data_state == {"pos": 1}
    assert_tree_equal(state, make_state(1, 1))
    with pytest.raises(FileNotFoundError, match="not complete"):
        mgr.restore(abstract_of(make_state(), single_device), step=2)
    # the resumed run reaches step 2 again and can save it over the torn one
    assert mgr.save(2, make_state(22, 2), data_state={"pos": 2})
    mgr.close()
    assert ck.CheckpointManager(tmp_path, save_interval_steps=1).latest_step() == 2
    state, _ = ck.restore_step_dir(tmp_path / "2", abstract_of(make_state(), single_device))
    assert_tree_equal(state, make_state(22, 2))


@pytest.mark.fault
def test_process_killed_mid_save_leaves_last_complete(tmp_path):
    """A real process SIGKILLed while its async save is still writing: the next run resumes
    from the last complete step."""
    script = textwrap.dedent(f"""
        import os, signal, jax, jax.numpy as jnp
        from t5x_sbs import checkpoints as ck
        mgr = ck.CheckpointManager({str(tmp_path)!r}, save_interval_steps=1, max_to_keep=5)
        mgr.save(1, {{"params": {{"w": jnp.ones((4, 4))}}}}, data_state={{"pos": 1}})
        mgr.wait_until_finished()
        big = {{"params": {{"w%d" % i: jnp.full((256, 1024), float(i)) for i in range(48)}}}}
        mgr.save(2, big, data_state={{"pos": 2}})
        os.kill(os.getpid(), signal.SIGKILL)  # die while step 2 is being written
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", script], env=env, timeout=120, capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    mgr = ck.CheckpointManager(tmp_path, save_interval_steps=1)
    assert mgr.latest_step() == 1
    abstract = {"params": {"w": jax.ShapeDtypeStruct((4, 4), jnp.float32, sharding=single_device(None))}}
    state, data_state = mgr.restore(abstract)
    assert data_state == {"pos": 1} and float(state["params"]["w"].sum()) == 16.0


def _mesh(shape, names):
    return jax.make_mesh(shape, names, axis_types=(AxisType.Auto,) * len(names))


@pytest.mark.distributed
def test_restore_onto_a_different_mesh(tmp_path):
    mesh_a = _mesh((2, 2, 2), ("data", "fsdp", "model"))
    specs_a = {"encoder": {"kernel": P("fsdp", "model")}, "token_embedder": {"embedding": P("model", "fsdp")}}
    state = make_state(3, 3)
    sharded = dict(state, params=jax.tree.map(
        lambda x, s: jax.device_put(x, NamedSharding(mesh_a, s)), state["params"], specs_a))
    with ck.CheckpointManager(tmp_path / "a", save_interval_steps=1) as mgr:
        mgr.save(3, sharded)
    # restore onto an 8-way 1-D mesh with other specs, and onto one device
    mesh_b = _mesh((8,), ("fsdp",))
    specs_b = {"encoder": {"kernel": P(None, "fsdp")}, "token_embedder": {"embedding": P("fsdp", None)}}
    abstract_b = abstract_of(state["params"], lambda x: None)
    abstract_b = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=NamedSharding(mesh_b, s)),
                              abstract_b, specs_b)
    params_b = initial_params.load_initial_params(tmp_path / "a", abstract_b)  # params only, from a MODEL_DIR
    assert params_b["encoder"]["kernel"].sharding.spec == P(None, "fsdp")
    assert_tree_equal(params_b, state["params"])
    full, _ = ck.CheckpointManager(tmp_path / "a", save_interval_steps=1).restore(
        abstract_of(state, single_device))
    assert_tree_equal(full, state)
    # and the other way: saved from one device, restored onto the (2,2,2) mesh
    with ck.CheckpointManager(tmp_path / "b", save_interval_steps=1) as mgr:
        mgr.save(1, state)
    abstract_a = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=NamedSharding(mesh_a, s)),
                              abstract_of(state["params"], lambda x: None), specs_a)
    params_a = initial_params.load_initial_params(tmp_path / "b" / "1", abstract_a)  # from a step dir
    assert params_a["token_embedder"]["embedding"].sharding.spec == P("model", "fsdp")
    assert_tree_equal(params_a, state["params"])


@pytest.mark.fault
def test_preemption_guard_catches_sigterm_and_restores_handler():
    before = signal.getsignal(signal.SIGTERM)
    with preemption.PreemptionGuard() as guard:
        assert not guard.requested and not guard.should_stop(0)
        os.kill(os.getpid(), signal.SIGTERM)
        assert guard.requested and guard.received == signal.SIGTERM and guard.should_stop(1)
    assert signal.getsignal(signal.SIGTERM) is before
    # Python's default_int_handler, or SIG_IGN when pytest was started as a background job
    before_interrupt = signal.getsignal(signal.SIGINT)
    with preemption.PreemptionGuard(signals=(signal.SIGTERM, signal.SIGINT)) as guard:
        os.kill(os.getpid(), signal.SIGINT)
        assert guard.requested
    assert signal.getsignal(signal.SIGINT) is before_interrupt


@dataclasses.dataclass(frozen=True)
class FakeConfig:
    vocab_size: int = 32
    dtype: str = "float32"


def test_model_config_is_found_from_step_and_best_dirs(tmp_path):
    path = model_files.save_model_config(tmp_path, FakeConfig(dtype=jnp.bfloat16))
    assert path == tmp_path / "config.json"
    assert '"bfloat16"' in path.read_text()
    (tmp_path / "best" / "3").mkdir(parents=True)
    assert model_files.find_model_config(tmp_path / "best" / "3") == path
    with pytest.raises(FileNotFoundError, match="save_model_config"):
        model_files.find_model_config(tmp_path.parent / "elsewhere-nothing")


def test_initial_checkpoint_vocab_rows_come_from_its_config(tmp_path):
    """An initial checkpoint's embedding rows are read from its config (ours or an HF dir's), not
    from its vocabulary; a config without a usable vocab_size is an error naming the file."""
    ours = tmp_path / "ours"
    model_files.save_model_config(ours, FakeConfig(vocab_size=1152))
    (ours / "best" / "3").mkdir(parents=True)
    assert model_files.initial_checkpoint_vocab_rows(str(ours / "best" / "3")) == 1152
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text('{"model_type": "t5", "vocab_size": 32128}')
    assert model_files.initial_checkpoint_vocab_rows(str(hf)) == 32128
    assert model_files.initial_checkpoint_vocab_rows("") is None
    assert model_files.initial_checkpoint_vocab_rows(str(tmp_path / "nothing")) is None
    (hf / "config.json").write_text('{"model_type": "t5"}')
    with pytest.raises(ValueError, match=r"hf/config\.json: field vocab_size is None"):
        model_files.initial_checkpoint_vocab_rows(str(hf))

"""T5X import: fixtures written from the documented T5X layouts import and match."""
import jax
import numpy as np
import pytest
import tensorstore as ts
from flax import serialization

from t5x_sbs import checkpoints
from t5x_sbs.checkpoints import initial_params, model_files
from t5x_sbs.convert.t5x_import import import_t5x
from t5x_sbs.models.config import T5Config
from t5x_sbs.models.info import param_shapes
from t5x_sbs.models.t5 import init_params

CONFIG = T5Config(vocab_size=64, d_model=32, d_kv=8, d_ff=48, num_heads=4, num_encoder_layers=2,
                  num_decoder_layers=3, relative_attention_num_buckets=8, dropout_rate=0.0)


def flat(tree, prefix=""):
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(flat(v, f"{prefix}/{k}" if prefix else k))
        return out
    return {prefix: np.asarray(tree)}


def to_t5x_form(name, array):
    """T5X stores attention kernels 2-D ([embed, heads*kv], out: [heads*kv, embed])."""
    if array.ndim == 3:
        return array.reshape(-1, array.shape[2]) if "/out/" in name else array.reshape(array.shape[0], -1)
    return array


def nest(flat_tree):
    out = {}
    for name, value in flat_tree.items():
        node = out
        *parents, leaf = name.split("/")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return out


def write_legacy(step_dir, t5x_params):
    """msgpack `checkpoint` + a zarr TensorStore per large tensor (T5X's legacy layout)."""
    step_dir.mkdir(parents=True)
    target = {}
    for i, (name, array) in enumerate(sorted(t5x_params.items())):
        if i % 2:  # small or unpartitioned tensors live inline in the msgpack
            target[name] = array
            continue
        rel = "target." + name.replace("/", ".")
        spec = {"driver": "zarr", "kvstore": {"driver": "file", "path": rel},
                "metadata": {"shape": list(array.shape), "chunks": list(array.shape),
                             "dtype": "<f4", "compressor": {"id": "gzip"}}}
        store = ts.open({**spec, "kvstore": {"driver": "file", "path": str(step_dir / rel)}},
                        create=True, open=True).result()
        store.write(array).result()
        target[name] = spec
    state = {"version": 3, "optimizer": {"target": nest(target),
                                          "state": {"step": np.int64(100), "param_states": {}}}}
    (step_dir / "checkpoint").write_bytes(serialization.msgpack_serialize(state))


@pytest.fixture(scope="module")
def ours_and_t5x():
    params = jax.tree.map(np.asarray, init_params(CONFIG, jax.random.PRNGKey(0)))
    ours = flat(params)
    return ours, {name: to_t5x_form(name, a) for name, a in ours.items()}


def check_imported(out_dir, ours, step):
    config = model_files.load_model_config(out_dir)
    assert config == CONFIG  # inferred from shapes (+ the dropout override)
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), param_shapes(config))
    assert checkpoints.CheckpointManager(out_dir).latest_step() == step
    imported = flat(initial_params.load_initial_params(out_dir, abstract))
    assert imported.keys() == ours.keys()
    for name in ours:
        np.testing.assert_array_equal(imported[name], ours[name], err_msg=name)


def test_legacy_msgpack_tensorstore_layout(tmp_path, ours_and_t5x):
    ours, t5x = ours_and_t5x
    write_legacy(tmp_path / "t5x" / "checkpoint_100", t5x)
    import_t5x(tmp_path / "t5x", tmp_path / "ours", dropout_rate=0.0)  # a MODEL_DIR: latest step
    check_imported(tmp_path / "ours", ours, step=100)


def test_orbax_layout(tmp_path, ours_and_t5x):
    import orbax.checkpoint as ocp

    ours, t5x = ours_and_t5x
    tree = {"optimizer": {"target": nest(t5x), "state": {"step": np.int64(7)}}}
    with ocp.Checkpointer(ocp.PyTreeCheckpointHandler()) as ckptr:
        ckptr.save((tmp_path / "t5x" / "checkpoint_7").absolute(), args=ocp.args.PyTreeSave(tree))
    import_t5x(tmp_path / "t5x" / "checkpoint_7", tmp_path / "ours", dropout_rate=0.0)
    check_imported(tmp_path / "ours", ours, step=7)


def test_bad_t5x_inputs_name_the_tensor(tmp_path, ours_and_t5x):
    _, t5x = ours_and_t5x
    wrong = dict(t5x)
    name = "decoder/layers_1/encoder_decoder_attention/key/kernel"
    wrong[name] = wrong[name][:, :-8]
    write_legacy(tmp_path / "a" / "checkpoint_1", wrong)
    with pytest.raises(ValueError, match=name):
        import_t5x(tmp_path / "a", tmp_path / "out")
    missing = {k: v for k, v in t5x.items() if k != "encoder/layers_1/mlp/wo/kernel"}
    write_legacy(tmp_path / "b" / "checkpoint_1", missing)
    with pytest.raises(ValueError, match="encoder/layers_1/mlp/wo/kernel"):
        import_t5x(tmp_path / "b", tmp_path / "out")
    (tmp_path / "c" / "checkpoint_1").mkdir(parents=True)
    (tmp_path / "c" / "checkpoint_1" / "checkpoint").write_bytes(b"\x00not msgpack")
    with pytest.raises(ValueError, match="checkpoint"):
        import_t5x(tmp_path / "c", tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="not a T5X checkpoint"):
        import_t5x(tmp_path / "nothing-here", tmp_path / "out")
    write_legacy(tmp_path / "d" / "checkpoint_1", t5x)
    with pytest.raises(ValueError, match="n_experts"):
        import_t5x(tmp_path / "d", tmp_path / "out", n_experts=4)

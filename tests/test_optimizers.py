"""Adafactor factored by logical axes (T5X's factor rules, optax's math): which params get a merged
view, the state shapes, bit-equality with plain optax.adafactor wherever the factoring does not
change, the knob off, and the tiny model training with it on 1 and 8 (FSDP) devices."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from t5x_sbs.trainer import optimizers
from t5x_sbs.trainer.optimizers import OptimizerConfig, factored_view
from trainer_fixtures import batches as synthetic_batches, tiny_config

EMBED, HEADS, KV, MLP, LAYERS = 256, 4, 64, 512, 3  # heads * kv = 256 >= 128, heads and kv < 128
AXES = {
    "query": P("embed", "heads", "kv"),
    "out": P("heads", "kv", "embed"),
    "scanned_query": P("layers", "embed", "heads", "kv"),
    "scanned_out": P("layers", "heads", "kv", "embed"),
    "wi": P("embed", "mlp"),
    "wo": P("mlp", "embed"),
    "scanned_wi": P("layers", "embed", "mlp"),
    "embedding": P("vocab", "embed"),
    "scale": P("embed"),
    "scanned_scale": P("layers", "embed"),
    "relpos": P("heads", "relpos_buckets"),
}
SHAPES = {
    "query": (EMBED, HEADS, KV), "out": (HEADS, KV, EMBED),
    "scanned_query": (LAYERS, EMBED, HEADS, KV), "scanned_out": (LAYERS, HEADS, KV, EMBED),
    "wi": (EMBED, MLP), "wo": (MLP, EMBED), "scanned_wi": (LAYERS, EMBED, MLP), "embedding": (384, EMBED),
    "scale": (EMBED,), "scanned_scale": (LAYERS, EMBED), "relpos": (HEADS, 32),
}
MERGED = {"query", "out", "scanned_query", "scanned_out"}  # the params whose factoring changes


def _params(seed=0):
    keys = jax.random.split(jax.random.key(seed), len(SHAPES))
    return {k: jax.random.normal(r, s) for r, (k, s) in zip(keys, sorted(SHAPES.items()))}


def _shapes(tree):
    return jax.tree.map(lambda x: tuple(x.shape), tree)


def test_factored_view_follows_t5x_rules():
    assert factored_view(("embed", "heads", "kv"), (4096, 64, 64)) == (4096, 4096)
    assert factored_view(("heads", "kv", "embed"), (64, 64, 4096)) == (4096, 4096)
    assert factored_view(("layers", "embed", "heads", "kv"), (24, 4096, 64, 64)) == (24, 4096, 4096)
    assert factored_view(("layers", "heads", "kv", "embed"), (24, 64, 64, 4096)) == (24, 4096, 4096)
    # left to optax's heuristic: already a (batch x) row x column shape, nothing to factor, not factored
    for axes, shape in [(("embed", "mlp"), (4096, 10240)), (("mlp", "embed"), (10240, 4096)),
                        (("vocab", "embed"), (32128, 4096)), (("layers", "embed", "mlp"), (24, 4096, 10240)),
                        (("embed",), (4096,)), (("layers", "embed"), (24, 4096)),
                        (("heads", "relpos_buckets"), (64, 32)),
                        (("heads", "embed", "kv"), (64, 4096, 64)),  # not adjacent: would need a transpose
                        (("embed", "heads", "kv"), (64, 2, 32)),  # below min_dim_size_to_factor
                        (("layers", "embed", "heads", "kv"), (512, 256, 4, 64)),  # layers would be factored
                        (("embed", "unknown", "kv"), (4096, 64, 64)), (None, (4096, 64, 64))]:
        assert factored_view(axes, shape) is None, (axes, shape)
    assert factored_view(("embed", "heads", "kv"), (64, 2, 32), min_dim_size_to_factor=32) == (64, 64)


def test_attention_kernels_are_factored_by_logical_axes():
    params = _params()
    on = jax.eval_shape(optimizers.make_optimizer(OptimizerConfig(), 10, AXES).init, params)[0]
    hk = HEADS * KV
    # optax's row / col naming follows its sort of the merged dims; compare the pair as a set
    expected = {"query": {(EMBED,), (hk,)}, "out": {(EMBED,), (hk,)},
                "scanned_query": {(LAYERS, EMBED), (LAYERS, hk)}, "scanned_out": {(LAYERS, EMBED), (LAYERS, hk)}}
    for name, stats in expected.items():
        assert {on.v_row[name].shape, on.v_col[name].shape} == stats, name
        assert on.v[name].shape == (1,), name  # no full-size second moment
    # the knob off (or no axes): optax's heuristic leaves these kernels unfactored
    for off in (optimizers.make_optimizer(OptimizerConfig(factor_by_logical_axes=False), 10, AXES),
                optimizers.make_optimizer(OptimizerConfig(), 10)):
        state = jax.eval_shape(off.init, params)[0]
        for name in MERGED:
            assert state.v[name].shape == SHAPES[name] and state.v_row[name].shape == (1,), name
    plain = jax.eval_shape(optax.adafactor(1e-3).init, params)[0]
    for name in set(SHAPES) - MERGED:
        assert (on.v_row[name].shape, on.v_col[name].shape, on.v[name].shape) == (
            plain.v_row[name].shape, plain.v_col[name].shape, plain.v[name].shape), name


@pytest.mark.parametrize("kw", [
    {},
    {"momentum": 0.9},
    {"clipping_threshold": None, "multiply_by_parameter_scale": False},
    {"grad_clip_norm": 1.0, "schedule": "rsqrt", "warmup_steps": 2},
])
def test_unchanged_params_get_exactly_optax_adafactor(kw):
    """Bit-equal updates and state for every param whose factoring does not change; the merged
    kernels get optax.adafactor's update of the merged-view param, reshaped back."""
    on = optimizers.make_optimizer(OptimizerConfig(**kw), 10, AXES)
    off = optimizers.make_optimizer(OptimizerConfig(factor_by_logical_axes=False, **kw), 10, AXES)
    params = _params()
    s_on, s_off = on.init(params), off.init(params)
    assert jax.tree.structure(s_on) == jax.tree.structure(s_off)  # same state layout as optax's

    view = {k: factored_view(tuple(AXES[k]), s) or s for k, s in SHAPES.items()}
    merged_axes_free = optimizers.make_optimizer(OptimizerConfig(factor_by_logical_axes=False, **kw), 10)
    as_view = lambda tree: {k: jnp.reshape(v, view[k]) for k, v in tree.items()}  # noqa: E731
    s_view = merged_axes_free.init(as_view(params))

    step_on, step_off, step_view = (jax.jit(t.update) for t in (on, off, merged_axes_free))
    p_on = p_off = params
    p_view = as_view(params)
    for i in range(3):
        grads = _params(seed=i + 1)
        u_on, s_on = step_on(grads, s_on, p_on)
        u_off, s_off = step_off(grads, s_off, p_off)
        u_view, s_view = step_view(as_view(grads), s_view, p_view)
        for name in SHAPES:
            if name in MERGED:
                np.testing.assert_array_equal(u_on[name], jnp.reshape(u_view[name], SHAPES[name]), err_msg=name)
            else:
                np.testing.assert_array_equal(u_on[name], u_off[name], err_msg=name)
        p_on, p_off, p_view = (optax.apply_updates(p, u) for p, u in
                               ((p_on, u_on), (p_off, u_off), (p_view, u_view)))
    # the state too (counts, and every slot of the unchanged params)
    for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(s_on)[0], jax.tree.leaves(s_off), strict=True):
        if not (path and getattr(path[-1], "key", None) in MERGED):
            np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))


def _trainer(mesh_config=None, devices=None, **model_kw):
    from t5x_sbs.trainer import partitioning as pt
    from t5x_sbs.trainer import train_step as tr
    from t5x_sbs.models.t5 import Transformer

    # the tiny model's attention kernels are [32, 4, 8]: factor dims from 16 up so they are factored
    opt = OptimizerConfig(learning_rate=1e-2, min_dim_size_to_factor=16)
    part = pt.Partitioner(pt.make_mesh(mesh_config or pt.MeshConfig(), devices))
    batch = synthetic_batches(seed=5, num_rows=8, count=1)[0]
    trainer = tr.Trainer(Transformer(tiny_config(**model_kw)), functools.partial(optimizers.make_optimizer, opt, 10),
                         part, {k: v.shape for k, v in batch.items()}, loss_config=tr.LossConfig(),
                         schedule=optimizers.make_schedule(opt, 10))
    return part, trainer, batch


def _train(part, trainer, batch, steps=4):
    state, losses = trainer.init_state(), []
    with part.activation_context():
        for _ in range(steps):
            state, metrics = trainer.train_step(state, part.global_batch(batch), trainer.base_rng)
            losses.append(float(metrics["loss"]))
    return state, losses


@pytest.mark.parametrize("scan_layers", [False, True])
def test_tiny_model_trains_with_factored_attention(scan_layers, tmp_path):
    from t5x_sbs import checkpoints

    part, trainer, batch = _trainer(devices=jax.devices()[:1], scan_layers=scan_layers)
    state, losses = _train(part, trainer, batch)
    with checkpoints.CheckpointManager(tmp_path) as manager:  # the factored state saves and restores
        manager.save(4, state, force=True)
        restored, _ = manager.restore(trainer.abstract_state())
    jax.tree.map(np.testing.assert_array_equal, restored, state)
    rms = state.opt_state[0]
    query = ("encoder", "layers" if scan_layers else "layers_0", "attention", "query", "kernel")
    pick = lambda tree: functools.reduce(lambda t, k: t[k], query, tree)  # noqa: E731
    assert pick(state.params).shape == ((2,) if scan_layers else ()) + (32, 4, 8)
    assert pick(rms.v).shape == (1,)
    assert {pick(rms.v_row).shape, pick(rms.v_col).shape} == {((2,) if scan_layers else ()) + (32,)}
    assert all(np.isfinite(losses)) and losses[-1] < losses[0] - 0.05, losses


@pytest.mark.distributed
def test_fsdp_shardings_of_factored_state():
    """8 devices, FSDP: full-size second moments keep their param's sharding, the factored
    statistics of the merged attention kernels are replicated; the step compiles and trains."""
    from t5x_sbs.trainer import partitioning as pt

    assert len(jax.devices()) == 8
    part, trainer, batch = _trainer(pt.MeshConfig(1, -1, 1), scan_layers=True)
    rms = trainer.state_shardings.opt_state[0]
    layers = trainer.state_shardings.params["encoder"]["layers"]
    scale = layers["pre_attention_layer_norm"]["scale"]
    assert rms.v["encoder"]["layers"]["pre_attention_layer_norm"]["scale"] == scale
    assert not scale.is_fully_replicated  # [layers, embed]: embed over fsdp
    for slot in (rms.v_row, rms.v_col, rms.v):
        assert slot["encoder"]["layers"]["attention"]["query"]["kernel"].is_fully_replicated
    state, losses = _train(part, trainer, batch)
    kernel = state.params["encoder"]["layers"]["attention"]["query"]["kernel"]
    assert kernel.sharding == layers["attention"]["query"]["kernel"] and not kernel.sharding.is_fully_replicated
    assert losses[-1] < losses[0] - 0.05, losses

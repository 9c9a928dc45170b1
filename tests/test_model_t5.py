"""Model unit tests: logical axes, scan == unrolled, packing masks, dtypes, dropout, config checks."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from t5x_sbs.models.config import T5Config
from t5x_sbs.models.info import logical_axes, param_shapes
from t5x_sbs.models.t5 import Transformer, init_params, stack_layers, unstack_layers

CFG = T5Config(vocab_size=64, d_model=32, d_kv=8, d_ff=48, num_heads=4, num_encoder_layers=2,
               num_decoder_layers=3, dropout_rate=0.0, relative_attention_num_buckets=8,
               relative_attention_max_distance=16)
AXES = {"batch", "length", "embed", "mlp", "heads", "kv", "joined_kv", "vocab", "relpos_buckets", "layers"}
ENC = jnp.array([[5, 6, 7, 9, 1, 0], [8, 9, 1, 0, 0, 0]])
TGT = jnp.array([[3, 4, 5, 1, 0], [6, 7, 1, 0, 0]])
DEC = jnp.array([[0, 3, 4, 5, 1], [0, 6, 7, 1, 0]])


@pytest.fixture(scope="module")
def params():
    return init_params(CFG, jax.random.PRNGKey(0))


def apply(config, params, *args, **kwargs):
    model = Transformer(config)
    return jax.jit(lambda p, *a: model.apply({"params": p}, *a, enable_dropout=False, **kwargs))(params, *args)


@pytest.mark.parametrize("scan", [False, True])
def test_every_param_has_logical_axes(scan):
    config = CFG.replace(scan_layers=scan, tie_word_embeddings=scan)
    specs = jax.tree_util.tree_leaves(logical_axes(config), is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
    shapes = jax.tree_util.tree_leaves(param_shapes(config))
    assert len(specs) == len(shapes)
    for spec, shape in zip(specs, shapes):
        assert len(spec) == len(shape.shape) and set(spec) <= AXES, (spec, shape)
    axes = logical_axes(config)
    if scan:
        assert tuple(axes["encoder"]["layers"]["attention"]["query"]["kernel"]) == ("layers", "embed", "heads", "kv")
        assert param_shapes(config)["decoder"]["layers"]["mlp"]["wo"]["kernel"].shape == (3, 48, 32)
    else:
        assert tuple(axes["decoder"]["logits_dense"]["kernel"]) == ("embed", "vocab")
        assert tuple(axes["encoder"]["relpos_bias"]["rel_embedding"]) == ("heads", "relpos_buckets")


def test_scanned_equals_unrolled(params):
    stacked = stack_layers(params)
    assert stacked["encoder"]["layers"]["mlp"]["wi_0"]["kernel"].shape == (2, 32, 48)
    roundtrip = unstack_layers(stacked)
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(lambda a, b: bool((a == b).all()), params, roundtrip))
    unrolled = apply(CFG, params, ENC, DEC, TGT)
    scanned = apply(CFG.replace(scan_layers=True), stacked, ENC, DEC, TGT)
    np.testing.assert_allclose(np.asarray(scanned), np.asarray(unrolled), atol=1e-5, rtol=1e-5)


def test_packed_row_equals_separate_examples(params):
    # Two examples packed into one row (segments 1, 2) vs each run alone, padded.
    enc_a, enc_b = [5, 6, 7, 1], [8, 9, 1]
    tgt_a, tgt_b = [3, 4, 1], [6, 7, 9, 1]
    pad = lambda x, n: x + [0] * (n - len(x))  # noqa: E731
    shift = lambda t: [0] + t[:-1]  # noqa: E731
    packed = apply(
        CFG, params, jnp.array([pad(enc_a + enc_b, 9)]), jnp.array([pad(shift(tgt_a) + shift(tgt_b), 8)]),
        jnp.array([pad(tgt_a + tgt_b, 8)]),
        jnp.array([pad([1] * 4 + [2] * 3, 9)]), jnp.array([pad([1] * 3 + [2] * 4, 8)]),
        jnp.array([pad(list(range(4)) + list(range(3)), 9)]), jnp.array([pad(list(range(3)) + list(range(4)), 8)]))
    for enc, tgt, span in ((enc_a, tgt_a, slice(0, 3)), (enc_b, tgt_b, slice(3, 7))):
        alone = apply(CFG, params, jnp.array([pad(enc, 6)]), jnp.array([pad(shift(tgt), 5)]), jnp.array([pad(tgt, 5)]))
        np.testing.assert_allclose(np.asarray(packed)[0, span], np.asarray(alone)[0, :len(tgt)], atol=1e-5)


def test_padding_does_not_change_valid_logits(params):
    short = apply(CFG, params, ENC[:, :5], DEC[:, :4], TGT[:, :4])
    longer = apply(CFG, params, jnp.pad(ENC, ((0, 0), (0, 3))), DEC, TGT)
    np.testing.assert_allclose(np.asarray(longer)[0, :4], np.asarray(short)[0], atol=1e-5)


def test_bfloat16_runs_close_to_float32(params):
    config = CFG.replace(dtype="bfloat16", param_dtype="bfloat16")
    bf16_params = jax.tree_util.tree_map(lambda x: x.astype(jnp.bfloat16), params)
    assert jax.tree_util.tree_leaves(init_params(config, jax.random.PRNGKey(0)))[0].dtype == jnp.bfloat16
    logits = apply(config, bf16_params, ENC, DEC, TGT)
    assert logits.dtype == jnp.float32 and bool(jnp.isfinite(logits).all())
    reference = apply(CFG, params, ENC, DEC, TGT)
    valid = np.asarray(TGT > 0)
    assert np.abs(np.asarray(logits - reference))[valid].max() < 0.1 * np.abs(np.asarray(reference))[valid].max()


def test_dropout_only_when_enabled(params):
    model = Transformer(CFG.replace(dropout_rate=0.3))
    run = jax.jit(lambda rng, on: model.apply({"params": params}, ENC, DEC, TGT, enable_dropout=on,
                                              rngs={"dropout": rng}), static_argnums=1)
    np.testing.assert_array_equal(run(jax.random.PRNGKey(1), False), run(jax.random.PRNGKey(2), False))
    assert not np.allclose(run(jax.random.PRNGKey(1), True), run(jax.random.PRNGKey(2), True))


def test_remat_keeps_gradients(params):
    def grads(config, p):
        model = Transformer(config)
        loss = lambda q: model.apply({"params": q}, ENC, DEC, TGT, enable_dropout=False).sum()  # noqa: E731
        return jax.jit(jax.grad(loss))(p)

    plain = grads(CFG.replace(scan_layers=True), stack_layers(params))
    remat = grads(CFG.replace(scan_layers=True, remat_policy="full"), stack_layers(params))
    for a, b in zip(jax.tree_util.tree_leaves(plain), jax.tree_util.tree_leaves(remat)):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4)


def test_config_rejects_bad_fields():
    with pytest.raises(ValueError, match="feed_forward_proj"):
        T5Config(feed_forward_proj="swish")
    with pytest.raises(ValueError, match="param_dtype"):
        T5Config(param_dtype="float77")
    with pytest.raises(ValueError, match="remat_policy"):
        T5Config(remat_policy="some")


@pytest.mark.parametrize("rate", [0.1, 0.5])
@pytest.mark.parametrize("shape", [(4, 64, 256), (3, 5, 7)])  # odd last axis: half a threefry word left over
def test_dropout_keeps_the_rate_and_the_mean(rate, shape):
    """Two 16-bit draws per threefry word: the dropped share is `rate` to sampling error, kept
    values are scaled by 1/(1-rate), and another key drops other elements."""
    from t5x_sbs.models.layers import Dropout

    x = jnp.ones(shape)
    drop = lambda key: Dropout(rate).apply({}, x, deterministic=False, rngs={"dropout": key})  # noqa: E731
    y = np.asarray(drop(jax.random.key(0)))
    n = y.size
    dropped = (y == 0).mean()
    assert abs(dropped - rate) < 5 * np.sqrt(rate * (1 - rate) / n) + 1 / 65536
    np.testing.assert_allclose(y[y != 0], 1 / (1 - round(rate * 65536) / 65536), rtol=1e-6)
    other = np.asarray(drop(jax.random.key(1)))
    assert ((y == 0) != (other == 0)).any()
    if n > 10_000:  # neighbours in one word are independent: no pairing of dropped elements
        pairs = (y.reshape(-1, 2) == 0)
        both = pairs.all(axis=1).mean()
        assert abs(both - rate ** 2) < 5 * np.sqrt(rate ** 2 * (1 - rate ** 2) / (n // 2))
    assert Dropout(rate).apply({}, x, deterministic=True) is x

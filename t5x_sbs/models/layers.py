"""T5 building blocks with T5X parameter names and logical axis names.

Every parameter is created through `nn.with_logical_partitioning` and major activations are
pinned with `nn.with_logical_constraint`, using the T5X axis vocabulary (batch, length, embed,
mlp, heads, kv, vocab, relpos_buckets, layers); the partitioner maps those names to mesh axes.
"""
from __future__ import annotations

import math
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from t5x_sbs.models.config import T5Config

Array = jax.Array
logical = nn.with_logical_partitioning
constrain = nn.with_logical_constraint
# T5X initialisers: fan-in truncated normal kernels, unit-normal embeddings.
kernel_init = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")
EMBED_AXES = ("batch", "length", "embed")


class Dropout(nn.Module):
    """Inverted dropout whose keep mask comes from 16-bit slices of threefry words.

    flax's Dropout draws a float32 uniform per element (a 32-bit word plus an int→float
    conversion); on CPU that costs 4.6x this (benchmarks/dropout_cost.py), and dropout was a third
    of a packed step. Here each 32-bit word gives two elements; the rate is rounded to 1/65536.
    """

    rate: float

    @nn.compact
    def __call__(self, x: Array, *, deterministic: bool) -> Array:
        if deterministic or self.rate == 0.0:
            return x
        if self.rate >= 1.0:
            return jnp.zeros_like(x)
        threshold = round(self.rate * 65536)
        return jnp.where(keep_mask(self.make_rng("dropout"), x.shape, threshold), x * (65536 / (65536 - threshold)), 0)


def keep_mask(rng: Array, shape: tuple[int, ...], threshold: int) -> Array:
    """Bernoulli(1 - threshold/65536) of `shape`: two uint16 draws per threefry word, taken along
    the last axis so the leading (batch, length) axes keep their sharding."""
    *lead, last = shape
    words = jax.random.bits(rng, (*lead, (last + 1) // 2), jnp.uint32)
    halves = lax.bitcast_convert_type(words, jnp.uint16).reshape(*lead, 2 * ((last + 1) // 2))
    return halves[..., :last] >= threshold


def rms_norm(config: T5Config, name: str) -> nn.RMSNorm:
    """T5's layer norm: no mean subtraction, no bias; statistics in float32."""
    return nn.RMSNorm(
        epsilon=config.layer_norm_epsilon,
        dtype=config.activation_dtype,
        param_dtype=config.weight_dtype,
        scale_init=logical(nn.initializers.ones, ("embed",)),
        name=name,
    )


class DenseGeneral(nn.Module):
    """Bias-free projection whose kernel is created with its full multi-axis shape.

    flax's DenseGeneral initialises a flattened 2-D kernel and, on every apply, re-checks the init
    against it; with a boxed 3-D (embed, heads, kv) kernel under a mesh that check fails on rank.
    Here the kernel is boxed at its real shape, so logical constraints resolve under any mesh.
    The values equal flax's: the init still sees the flattened (fan_in, fan_out) shape.
    """

    features: int | tuple[int, ...]
    kernel_axes: tuple[str, ...]
    axis: int | tuple[int, ...] = -1
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32
    kernel_init: nn.initializers.Initializer = kernel_init

    @nn.compact
    def __call__(self, inputs: Array) -> Array:
        features = (self.features,) if isinstance(self.features, int) else tuple(self.features)
        axis = (self.axis,) if isinstance(self.axis, int) else tuple(self.axis)
        axis = tuple(a % inputs.ndim for a in axis)
        in_shape = tuple(inputs.shape[a] for a in axis)

        def flat_init(rng, shape, dtype):
            flat = (math.prod(in_shape), math.prod(features))
            return jnp.reshape(self.kernel_init(rng, flat, dtype), shape)

        kernel = self.param("kernel", logical(flat_init, self.kernel_axes), in_shape + features, self.param_dtype)
        inputs, kernel = jnp.asarray(inputs, self.dtype), jnp.asarray(kernel, self.dtype)
        contract = (axis, tuple(range(len(axis))))
        return lax.dot_general(inputs, kernel, (contract, ((), ())))


def dense(config: T5Config, features, axes: tuple, name: str, axis=-1, init=kernel_init) -> DenseGeneral:
    return DenseGeneral(features, axes, axis=axis, dtype=config.activation_dtype,
                        param_dtype=config.weight_dtype, kernel_init=init, name=name)


def relative_position_bucket(qlen: int, klen: int, bidirectional: bool, num_buckets: int, max_distance: int) -> np.ndarray:
    """[qlen, klen] bucket ids, computed as in HF/Mesh TF T5 (float32 log), on the host: shapes are static."""
    relative_position = np.arange(klen)[None, :] - np.arange(qlen)[:, None]  # key - query
    buckets = np.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets += (relative_position > 0).astype(np.int64) * num_buckets
        relative_position = np.abs(relative_position)
    else:
        relative_position = -np.minimum(relative_position, 0)
    max_exact = num_buckets // 2
    is_small = relative_position < max_exact
    with np.errstate(divide="ignore"):
        scaled = np.log(relative_position.astype(np.float32) / np.float32(max_exact))
    scaled = scaled / np.float32(math.log(max_distance / max_exact)) * np.float32(num_buckets - max_exact)
    if_large = max_exact + np.where(is_small, 0, scaled).astype(np.int64)
    if_large = np.minimum(if_large, num_buckets - 1)
    return buckets + np.where(is_small, relative_position, if_large)


class RelativePositionBiases(nn.Module):
    """Per-head bias from relative-position buckets; computed once per stack and shared by its layers."""

    config: T5Config
    bidirectional: bool

    @nn.compact
    def __call__(self, qlen: int, klen: int) -> Array:
        cfg = self.config
        rel_embedding = self.param(
            "rel_embedding",
            logical(nn.initializers.variance_scaling(1.0, "fan_avg", "uniform"), ("heads", "relpos_buckets")),
            (cfg.num_heads, cfg.relative_attention_num_buckets),
            cfg.weight_dtype,
        )
        buckets = relative_position_bucket(
            qlen, klen, self.bidirectional, cfg.relative_attention_num_buckets, cfg.relative_attention_max_distance
        )
        values = jnp.take(jnp.asarray(rel_embedding, jnp.float32), jnp.asarray(buckets, jnp.int32), axis=1)
        return values[None]  # [1, heads, qlen, klen]


class MultiHeadAttention(nn.Module):
    """T5 attention: no 1/sqrt(d) scaling at run time (it lives in the query init), optional KV cache."""

    config: T5Config

    @nn.compact
    def __call__(self, inputs_q: Array, inputs_kv: Array, mask: Optional[Array], bias: Optional[Array],
                 *, deterministic: bool, decode: bool = False) -> Array:
        cfg = self.config
        head_axes = ("embed", "heads", "kv")
        query_init = lambda *a: kernel_init(*a) * cfg.d_kv**-0.5  # noqa: E731  (T5X folds the scaling here)
        query = dense(cfg, (cfg.num_heads, cfg.d_kv), head_axes, "query", init=query_init)(inputs_q)
        key = dense(cfg, (cfg.num_heads, cfg.d_kv), head_axes, "key")(inputs_kv)
        value = dense(cfg, (cfg.num_heads, cfg.d_kv), head_axes, "value")(inputs_kv)
        query = constrain(query, ("batch", "length", "heads", "kv"))
        key = constrain(key, ("batch", "length", "heads", "kv"))
        value = constrain(value, ("batch", "length", "heads", "kv"))
        if decode:
            key, value, mask, bias = self._use_cache(key, value, mask, bias)

        logits = jnp.einsum("bqhd,bkhd->bhqk", query, key).astype(jnp.float32)
        if bias is not None:
            logits = logits + bias.astype(jnp.float32)
        if mask is not None:
            logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
        weights = jax.nn.softmax(logits, axis=-1).astype(cfg.activation_dtype)
        weights = Dropout(cfg.dropout_rate)(weights, deterministic=deterministic)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, value)
        out = constrain(out, ("batch", "length", "heads", "kv"))
        return dense(cfg, cfg.d_model, ("heads", "kv", "embed"), "out", axis=(-2, -1))(out)

    def _use_cache(self, key, value, mask, bias):
        """Autoregressive step: write this position's key/value, attend to positions <= it.

        The first `decode=True` call (with the full-length decoder input) only creates the
        zero cache `[batch, max_length, heads, kv]`; later calls take one token each.
        """
        initialized = self.has_variable("cache", "cached_key")
        cached_key = self.variable("cache", "cached_key", jnp.zeros, key.shape, key.dtype)
        cached_value = self.variable("cache", "cached_value", jnp.zeros, value.shape, value.dtype)
        cache_index = self.variable("cache", "cache_index", lambda: jnp.array(0, jnp.int32))
        if not initialized:
            return key, value, mask, bias
        if key.shape[1] != 1:
            raise ValueError(f"decode step expects one token per row, got length {key.shape[1]}")
        index = cache_index.value
        key = lax.dynamic_update_slice(cached_key.value, key, (0, index, 0, 0))
        value = lax.dynamic_update_slice(cached_value.value, value, (0, index, 0, 0))
        cached_key.value, cached_value.value, cache_index.value = key, value, index + 1
        filled = (jnp.arange(key.shape[1]) <= index)[None, None, None, :]
        mask = filled if mask is None else jnp.logical_and(mask, filled)
        if bias is not None:  # bias is [1, heads, max_length, max_length]: keep this query's row
            bias = lax.dynamic_slice_in_dim(bias, index, 1, axis=2)
        return key, value, mask, bias


class MlpBlock(nn.Module):
    """Gated-GELU (v1.1: wi_0, wi_1, tanh GELU as HF's gelu_new) or ReLU (v1.0: wi) feed-forward."""

    config: T5Config

    @nn.compact
    def __call__(self, x: Array, *, deterministic: bool) -> Array:
        cfg = self.config
        if cfg.is_gated:
            h = nn.gelu(dense(cfg, cfg.d_ff, ("embed", "mlp"), "wi_0")(x), approximate=True)
            h = h * dense(cfg, cfg.d_ff, ("embed", "mlp"), "wi_1")(x)
        else:
            h = nn.relu(dense(cfg, cfg.d_ff, ("embed", "mlp"), "wi")(x))
        h = constrain(h, ("batch", "length", "mlp"))
        h = Dropout(cfg.dropout_rate)(h, deterministic=deterministic)
        return dense(cfg, cfg.d_model, ("mlp", "embed"), "wo")(h)

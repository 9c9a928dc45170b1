"""Autoregressive decoding with a KV cache: greedy and temperature sampling, jit-compiled.

`generate` encodes once, then runs one cached decoder step per token inside a `lax.while_loop`
that stops as soon as every row has emitted EOS (or at `max_decode_length`).
"""
from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp
from jax import lax

from t5x_sbs.models.t5 import Transformer

METHODS = ("greedy", "sample")


def generate(model: Transformer, params, encoder_input_tokens, *, max_decode_length: int, method: str = "greedy",
             temperature: float = 1.0, rng: Optional[jax.Array] = None, encoder_segment_ids=None):
    """Decode a batch. Returns (tokens [B, max_decode_length], scores [B]).

    Tokens follow the decoder start token (not included) and end with EOS, then padding 0.
    Scores are the sum of the model's log-probabilities (temperature 1) of the emitted tokens,
    EOS included. `method="sample"` draws from softmax(logits / temperature) and needs `rng`.
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r}: expected one of {METHODS}")
    if method == "sample" and rng is None:
        raise ValueError("method='sample' needs rng")
    if max_decode_length <= 0:
        raise ValueError(f"max_decode_length must be positive, got {max_decode_length}")
    rng = jax.random.PRNGKey(0) if rng is None else rng
    fn = _compiled(model, int(max_decode_length), method)
    return fn(params, jnp.asarray(encoder_input_tokens, jnp.int32), encoder_segment_ids,
              jnp.asarray(temperature, jnp.float32), rng)


@functools.lru_cache(maxsize=64)
def _compiled(model: Transformer, max_decode_length: int, method: str):
    return jax.jit(functools.partial(_generate, model, max_decode_length, method))


def greedy_fn(model: Transformer, max_decode_length: int):
    """(params, encoder_input_tokens) -> (tokens, scores), greedy: for callers that jit it themselves
    with explicit shardings (Trainer.decode, multi-host evaluation)."""
    if max_decode_length <= 0:
        raise ValueError(f"max_decode_length must be positive, got {max_decode_length}")

    def fn(params, encoder_input_tokens):
        return _generate(model, int(max_decode_length), "greedy", params, encoder_input_tokens, None,
                         jnp.float32(1.0), jax.random.PRNGKey(0))

    return fn


def init_cache(model: Transformer, params, encoded, encoder_input_tokens, max_decode_length: int):
    """Zero KV cache for `max_decode_length` steps (shapes via eval_shape; nothing is computed)."""
    batch = encoder_input_tokens.shape[0]
    dummy = jnp.zeros((batch, max_decode_length), jnp.int32)

    def create():
        _, variables = model.apply({"params": params}, encoded, encoder_input_tokens, dummy, enable_dropout=False,
                                   decode=True, max_decode_length=max_decode_length, method=model.decode,
                                   mutable=["cache"])
        return variables["cache"]

    return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(create))


def _generate(model, max_decode_length, method, params, encoder_input_tokens, encoder_segment_ids, temperature, rng):
    cfg = model.config
    batch = encoder_input_tokens.shape[0]
    encoded = model.apply({"params": params}, encoder_input_tokens, encoder_segment_ids, enable_dropout=False,
                          method=model.encode)
    cache = init_cache(model, params, encoded, encoder_input_tokens, max_decode_length)
    tokens = jnp.full((batch, max_decode_length + 1), cfg.pad_token_id, jnp.int32)
    tokens = tokens.at[:, 0].set(cfg.decoder_start_token_id)
    state = (jnp.array(0), tokens, cache, jnp.zeros((batch,), jnp.bool_), jnp.zeros((batch,), jnp.float32), rng)

    def keep_going(state):
        step, _, _, done, _, _ = state
        return (step < max_decode_length) & ~jnp.all(done)

    def one_step(state):
        step, tokens, cache, done, scores, rng = state
        current = lax.dynamic_slice_in_dim(tokens, step, 1, axis=1)
        logits, variables = model.apply(
            {"params": params, "cache": cache}, encoded, encoder_input_tokens, current,
            encoder_segment_ids=encoder_segment_ids, enable_dropout=False, decode=True,
            max_decode_length=max_decode_length, method=model.decode, mutable=["cache"])
        logits = logits[:, 0, :]
        rng, draw = jax.random.split(rng)
        if method == "greedy":
            chosen = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        else:
            chosen = jax.random.categorical(draw, logits / temperature, axis=-1).astype(jnp.int32)
        log_prob = jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), chosen[:, None], axis=-1)[:, 0]
        chosen = jnp.where(done, cfg.pad_token_id, chosen)
        scores = scores + jnp.where(done, 0.0, log_prob)
        tokens = lax.dynamic_update_slice_in_dim(tokens, chosen[:, None], step + 1, axis=1)
        return step + 1, tokens, variables["cache"], done | (chosen == cfg.eos_token_id), scores, rng

    _, tokens, _, _, scores, _ = lax.while_loop(keep_going, one_step, state)
    return tokens[:, 1:], scores

"""A smoke test of the model code: init a T5, run a forward pass and a greedy decode, time both.

`t5x-sbs smoke` prints the result; with no gin it uses `TINY`, fast on one CPU core.
"""
from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp

from t5x_sbs.models.config import T5Config
from t5x_sbs.models.decoding import generate
from t5x_sbs.models.t5 import Transformer, init_params, stack_layers

# A tiny v1.1-style model: fast on one CPU core.
TINY = dict(vocab_size=512, d_model=64, d_kv=16, d_ff=128, num_heads=4, num_encoder_layers=2,
            num_decoder_layers=2, dropout_rate=0.0)


@dataclasses.dataclass(frozen=True)
class SmokeResult:
    logits_shape: tuple[int, ...]
    logits_dtype: str
    logits_finite: bool
    forward_s: float               # incl. compile
    tokens: list[list[int]]        # greedy decode, one row per batch row
    scores: list[float]
    decode_s: float                # incl. compile


def random_batch(config: T5Config, rng: jax.Array, batch_size: int, length: int) -> tuple[jax.Array, jax.Array]:
    """Encoder tokens ending in EOS and the decoder tokens shifted right from them."""
    encoder_tokens = jax.random.randint(rng, (batch_size, length), 2, config.vocab_size)
    encoder_tokens = encoder_tokens.at[:, -1].set(config.eos_token_id)
    decoder_tokens = jnp.roll(encoder_tokens, 1, axis=1).at[:, 0].set(config.decoder_start_token_id)
    return encoder_tokens, decoder_tokens


def smoke(config: T5Config, batch_size: int = 2, length: int = 12, max_decode_length: int = 16,
          seed: int = 0) -> SmokeResult:
    """Params (unscanned init, stacked when `scan_layers`), one jitted forward, one KV-cache decode."""
    rng_params, rng_tokens = jax.random.split(jax.random.PRNGKey(seed))
    params = init_params(config.replace(scan_layers=False), rng_params)
    params = stack_layers(params) if config.scan_layers else params
    model = Transformer(config)
    encoder_tokens, decoder_tokens = random_batch(config, rng_tokens, batch_size, length)

    start = time.perf_counter()
    forward = jax.jit(lambda p, e, d: model.apply({"params": p}, e, d, enable_dropout=False))
    logits = forward(params, encoder_tokens, decoder_tokens).block_until_ready()
    forward_s = time.perf_counter() - start
    start = time.perf_counter()
    tokens, scores = generate(model, params, encoder_tokens, max_decode_length=max_decode_length)
    tokens.block_until_ready()
    return SmokeResult(logits_shape=tuple(logits.shape), logits_dtype=str(logits.dtype),
                       logits_finite=bool(jnp.isfinite(logits).all()), forward_s=forward_s,
                       tokens=[row.tolist() for row in tokens], scores=[float(s) for s in scores],
                       decode_s=time.perf_counter() - start)

"""Flax (linen) encoder-decoder T5 (v1.0 and v1.1 / Flan-T5) with T5X parameter names.

Parameter layout (unrolled): `token_embedder/embedding`, `encoder/relpos_bias/rel_embedding`,
`encoder/layers_{i}/{pre_attention_layer_norm,attention,pre_mlp_layer_norm,mlp}`,
`encoder/encoder_norm`, `decoder/relpos_bias/rel_embedding`,
`decoder/layers_{i}/{pre_self_attention_layer_norm,self_attention,pre_cross_attention_layer_norm,
encoder_decoder_attention,pre_mlp_layer_norm,mlp}`, `decoder/decoder_norm`, and
`decoder/logits_dense/kernel` when untied.

With `scan_layers=True` the `layers_{i}` subtrees become one `layers` subtree whose leaves carry
a leading `layers` axis of size num_layers (logical axis name "layers"); `stack_layers` /
`unstack_layers` convert between the two layouts.
"""
from __future__ import annotations

import re
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from t5x_sbs.models.config import T5Config
from t5x_sbs.models.layers import (
    EMBED_AXES, Dropout, MlpBlock, MultiHeadAttention, RelativePositionBiases, constrain, dense, logical, rms_norm,
)

Array = jax.Array
REMAT_POLICIES = {
    "full": None,  # save nothing, recompute the layer in the backward pass
    "minimal": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


class EncoderLayer(nn.Module):
    config: T5Config
    deterministic: bool = True

    @nn.compact
    def __call__(self, x: Array, mask: Array, bias: Array):
        cfg, det = self.config, self.deterministic
        h = rms_norm(cfg, "pre_attention_layer_norm")(x)
        h = MultiHeadAttention(cfg, name="attention")(h, h, mask, bias, deterministic=det)
        x = x + Dropout(cfg.dropout_rate)(h, deterministic=det)
        h = rms_norm(cfg, "pre_mlp_layer_norm")(x)
        h = MlpBlock(cfg, name="mlp")(h, deterministic=det)
        x = x + Dropout(cfg.dropout_rate)(h, deterministic=det)
        return constrain(x, EMBED_AXES), None  # (carry, output): the nn.scan signature


class DecoderLayer(nn.Module):
    config: T5Config
    deterministic: bool = True
    decode: bool = False

    @nn.compact
    def __call__(self, y: Array, encoded: Array, self_mask: Optional[Array], cross_mask: Array, bias: Array):
        cfg, det = self.config, self.deterministic
        h = rms_norm(cfg, "pre_self_attention_layer_norm")(y)
        h = MultiHeadAttention(cfg, name="self_attention")(h, h, self_mask, bias, deterministic=det, decode=self.decode)
        y = y + Dropout(cfg.dropout_rate)(h, deterministic=det)
        h = rms_norm(cfg, "pre_cross_attention_layer_norm")(y)
        h = MultiHeadAttention(cfg, name="encoder_decoder_attention")(h, encoded, cross_mask, None, deterministic=det)
        y = y + Dropout(cfg.dropout_rate)(h, deterministic=det)
        h = rms_norm(cfg, "pre_mlp_layer_norm")(y)
        h = MlpBlock(cfg, name="mlp")(h, deterministic=det)
        y = y + Dropout(cfg.dropout_rate)(h, deterministic=det)
        return constrain(y, EMBED_AXES), None


def run_layers(layer_cls, config: T5Config, num_layers: int, x: Array, *args, **layer_kwargs) -> Array:
    """Apply `num_layers` layers, unrolled (`layers_{i}`) or scanned (`layers`, leading axis)."""
    if config.remat_policy != "none":
        layer_cls = nn.remat(layer_cls, policy=REMAT_POLICIES[config.remat_policy], prevent_cse=not config.scan_layers)
    if config.scan_layers:
        scanned = nn.scan(
            layer_cls,
            variable_axes={"params": 0, "cache": 0},
            split_rngs={"params": True, "dropout": True},
            in_axes=(nn.broadcast,) * len(args),
            length=num_layers,
            metadata_params={nn.PARTITION_NAME: "layers"},
        )
        x, _ = scanned(config, name="layers", **layer_kwargs)(x, *args)
        return x
    for i in range(num_layers):
        x, _ = layer_cls(config, name=f"layers_{i}", **layer_kwargs)(x, *args)
    return x


class Encoder(nn.Module):
    config: T5Config
    shared_embedding: nn.Module

    @nn.compact
    def __call__(self, tokens: Array, mask: Array, *, deterministic: bool) -> Array:
        cfg = self.config
        x = self.shared_embedding(tokens.astype(jnp.int32)).astype(cfg.activation_dtype)
        x = Dropout(cfg.dropout_rate)(x, deterministic=deterministic)
        x = constrain(x, EMBED_AXES)
        length = tokens.shape[1]
        bias = RelativePositionBiases(cfg, bidirectional=True, name="relpos_bias")(length, length)
        x = run_layers(EncoderLayer, cfg, cfg.num_encoder_layers, x, mask, bias, deterministic=deterministic)
        x = rms_norm(cfg, "encoder_norm")(x)
        return Dropout(cfg.dropout_rate)(x, deterministic=deterministic)


class Decoder(nn.Module):
    config: T5Config
    shared_embedding: nn.Module

    @nn.compact
    def __call__(self, encoded: Array, tokens: Array, self_mask: Optional[Array], cross_mask: Array, *,
                 deterministic: bool, decode: bool, max_decode_length: Optional[int]) -> Array:
        cfg = self.config
        y = self.shared_embedding(tokens.astype(jnp.int32)).astype(cfg.activation_dtype)
        y = Dropout(cfg.dropout_rate)(y, deterministic=deterministic)
        y = constrain(y, EMBED_AXES)
        # In decode mode the bias covers the whole cache; attention keeps the current row.
        length = max_decode_length if decode and max_decode_length else tokens.shape[1]
        bias = RelativePositionBiases(cfg, bidirectional=False, name="relpos_bias")(length, length)
        y = run_layers(DecoderLayer, cfg, cfg.num_decoder_layers, y, encoded, self_mask, cross_mask, bias,
                       deterministic=deterministic, decode=decode)
        y = rms_norm(cfg, "decoder_norm")(y)
        y = Dropout(cfg.dropout_rate)(y, deterministic=deterministic)
        if cfg.tie_word_embeddings:  # v1.0: rescale before the tied projection, as Mesh TF / HF do
            logits = self.shared_embedding.attend(y * cfg.d_model**-0.5)
        else:
            logits = dense(cfg, cfg.vocab_size, ("embed", "vocab"), "logits_dense")(y)
        return constrain(logits.astype(jnp.float32), ("batch", "length", "vocab"))


def _pairwise(query_valid: Array, key_valid: Array) -> Array:
    return nn.make_attention_mask(query_valid, key_valid, dtype=jnp.bool_)


def _same_segment(query_segments: Optional[Array], key_segments: Optional[Array]) -> Optional[Array]:
    if query_segments is None or key_segments is None:
        return None
    return nn.make_attention_mask(query_segments, key_segments, jnp.equal, dtype=jnp.bool_)


class Transformer(nn.Module):
    """T5 encoder-decoder. Inputs are int token ids [batch, length]; logits come out float32."""

    config: T5Config

    def setup(self):
        cfg = self.config
        self.token_embedder = nn.Embed(
            num_embeddings=cfg.vocab_size,
            features=cfg.d_model,
            dtype=cfg.activation_dtype,
            param_dtype=cfg.weight_dtype,
            embedding_init=logical(nn.initializers.normal(stddev=1.0), ("vocab", "embed")),
        )
        self.encoder = Encoder(cfg, shared_embedding=self.token_embedder)
        self.decoder = Decoder(cfg, shared_embedding=self.token_embedder)

    def encode(self, encoder_input_tokens, encoder_segment_ids=None, encoder_positions=None, *, enable_dropout=True):
        """Encoder output [batch, length, d_model]. Positions are accepted for T5X compatibility:
        relative biases use in-row offsets, which equal in-segment offsets for contiguous packing."""
        valid = encoder_input_tokens > 0
        mask = nn.combine_masks(_pairwise(valid, valid), _same_segment(encoder_segment_ids, encoder_segment_ids))
        return self.encoder(encoder_input_tokens, mask, deterministic=not enable_dropout)

    def decode(self, encoded, encoder_input_tokens, decoder_input_tokens, decoder_target_tokens=None,
               encoder_segment_ids=None, decoder_segment_ids=None, decoder_positions=None,
               decoder_encoder_segment_ids=None, *, enable_dropout=True, decode=False, max_decode_length=None):
        """Decoder logits. `decode=True` runs one cached step per call (see layers.MultiHeadAttention).

        `decoder_encoder_segment_ids` (default: `decoder_segment_ids`) names the encoder segment each
        target token reads: several decoder segments (a label and a rationale, each attending only
        to itself) can then share one encoded input (the shared-encoder step-by-step layout)."""
        encoder_valid = encoder_input_tokens > 0
        if decode:
            self_mask = None  # causality comes from the cache fill level
            cross_mask = _pairwise(jnp.ones_like(decoder_input_tokens, jnp.bool_), encoder_valid)
        else:
            # Padding comes from the targets: decoder inputs start with id 0 (= pad).
            decoder_valid = (decoder_target_tokens > 0) if decoder_target_tokens is not None else \
                jnp.ones_like(decoder_input_tokens, jnp.bool_)
            self_mask = nn.combine_masks(
                nn.make_causal_mask(decoder_input_tokens, dtype=jnp.bool_),
                _pairwise(decoder_valid, decoder_valid),
                _same_segment(decoder_segment_ids, decoder_segment_ids),
            )
            reads = decoder_segment_ids if decoder_encoder_segment_ids is None else decoder_encoder_segment_ids
            cross_mask = nn.combine_masks(
                _pairwise(decoder_valid, encoder_valid), _same_segment(reads, encoder_segment_ids)
            )
        return self.decoder(encoded, decoder_input_tokens, self_mask, cross_mask, deterministic=not enable_dropout,
                            decode=decode, max_decode_length=max_decode_length)

    def __call__(self, encoder_input_tokens, decoder_input_tokens, decoder_target_tokens=None,
                 encoder_segment_ids=None, decoder_segment_ids=None, encoder_positions=None,
                 decoder_positions=None, decoder_encoder_segment_ids=None, *, enable_dropout=True, decode=False,
                 max_decode_length=None):
        encoded = self.encode(encoder_input_tokens, encoder_segment_ids, encoder_positions, enable_dropout=enable_dropout)
        return self.decode(encoded, encoder_input_tokens, decoder_input_tokens, decoder_target_tokens,
                           encoder_segment_ids, decoder_segment_ids, decoder_positions, decoder_encoder_segment_ids,
                           enable_dropout=enable_dropout, decode=decode, max_decode_length=max_decode_length)


def init_params(config: T5Config, rng: jax.Array, *, boxed: bool = False) -> Any:
    """Random parameters (`params` collection). `boxed=True` keeps the logical-axis boxes."""
    model = Transformer(config)
    tokens = jnp.ones((1, 1), jnp.int32)
    variables = model.init(rng, tokens, tokens, enable_dropout=False)
    return variables["params"] if boxed else nn.meta.unbox(variables["params"])


_LAYER_KEY = re.compile(r"^layers_(\d+)$")


def stack_layers(params: dict) -> dict:
    """Unrolled → scanned layout: `{encoder,decoder}/layers_{i}/...` → `.../layers/...` [num_layers, ...]."""
    out = dict(params)
    for stack in ("encoder", "decoder"):
        if stack not in params:
            continue
        sub = dict(params[stack])
        keys = sorted((k for k in sub if _LAYER_KEY.match(k)), key=lambda k: int(_LAYER_KEY.match(k).group(1)))
        if keys:
            if [int(_LAYER_KEY.match(k).group(1)) for k in keys] != list(range(len(keys))):
                raise ValueError(f"{stack}: layer keys are not layers_0..layers_{len(keys) - 1}: {keys}")
            layers = [sub.pop(k) for k in keys]
            sub["layers"] = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *layers)
        out[stack] = sub
    return out


def unstack_layers(params: dict) -> dict:
    """Scanned → unrolled layout (inverse of `stack_layers`)."""
    out = dict(params)
    for stack in ("encoder", "decoder"):
        if stack not in params or "layers" not in params[stack]:
            continue
        sub = dict(params[stack])
        stacked = sub.pop("layers")
        num_layers = jax.tree_util.tree_leaves(stacked)[0].shape[0]
        for i in range(num_layers):
            sub[f"layers_{i}"] = jax.tree_util.tree_map(lambda x, i=i: x[i], stacked)
        out[stack] = sub
    return out

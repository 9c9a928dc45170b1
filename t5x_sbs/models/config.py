"""`T5Config`: the one description of a T5 architecture, gin-configurable as `T5Config`.

Gin files under `gin/models/` bind its fields (`T5Config.d_model = 512`); code gets the bound
config with `T5Config.from_gin()`. Defaults are T5 v1.1 small.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import gin
import jax.numpy as jnp

FEED_FORWARD_PROJS = ("gated-gelu", "relu")
REMAT_POLICIES = ("none", "full", "minimal")


@gin.configurable("T5Config")
@dataclasses.dataclass(frozen=True)
class T5Config:
    vocab_size: int = 32128
    d_model: int = 512
    d_kv: int = 64
    d_ff: int = 1024
    num_heads: int = 6
    num_encoder_layers: int = 8
    num_decoder_layers: int = 8
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    dropout_rate: float = 0.1
    layer_norm_epsilon: float = 1e-6
    # "gated-gelu": v1.1 / Flan-T5 (wi_0, wi_1); "relu": v1.0 (wi).
    feed_forward_proj: str = "gated-gelu"
    # True: v1.0 (logits = embedding.attend(y * d_model**-0.5)); False: separate logits_dense.
    tie_word_embeddings: bool = False
    dtype: str = "float32"  # activations
    param_dtype: str = "float32"
    scan_layers: bool = False
    remat_policy: str = "none"  # "none" | "full" | "minimal" (save matmuls without batch dims)
    pad_token_id: int = 0
    eos_token_id: int = 1
    decoder_start_token_id: int = 0

    def __post_init__(self):
        if self.feed_forward_proj not in FEED_FORWARD_PROJS:
            raise ValueError(f"T5Config.feed_forward_proj={self.feed_forward_proj!r}: expected one of {FEED_FORWARD_PROJS}")
        if self.remat_policy not in REMAT_POLICIES:
            raise ValueError(f"T5Config.remat_policy={self.remat_policy!r}: expected one of {REMAT_POLICIES}")
        for name in ("dtype", "param_dtype"):
            try:
                jnp.dtype(getattr(self, name))
            except TypeError as e:
                raise ValueError(f"T5Config.{name}={getattr(self, name)!r} is not a dtype") from e
        for name in ("vocab_size", "d_model", "d_kv", "d_ff", "num_heads", "num_encoder_layers", "num_decoder_layers"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"T5Config.{name} must be positive, got {getattr(self, name)}")

    @property
    def activation_dtype(self) -> jnp.dtype:
        return jnp.dtype(self.dtype)

    @property
    def weight_dtype(self) -> jnp.dtype:
        return jnp.dtype(self.param_dtype)

    @property
    def is_gated(self) -> bool:
        return self.feed_forward_proj.startswith("gated-")

    @classmethod
    def from_gin(cls, **overrides: Any) -> "T5Config":
        """The config with the currently parsed gin bindings applied (then `overrides`)."""
        return cls(**overrides)

    def replace(self, **changes: Any) -> "T5Config":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

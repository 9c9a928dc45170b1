"""The distilling step-by-step loss: a weighted sum of per-task token-mean cross-entropies.

    L = Σ_t w_t · (Σ_{tokens of task t} CE) / max(1, Σ_{tokens of task t} 1)

with t ∈ {label, rationale}, w_label = 1 and w_rationale = λ (or the paper code's α spelling,
w_label = α, w_rationale = 1 − α). Which task a target token belongs to travels with the token
(`decoder_task_ids`: 1 label, 2 rationale, 0 padding), so one formula serves padded, packed,
paired and mixture batches. Standard finetuning is the same loss with only label tokens.

Per-token extras follow T5X: z-loss (default 1e-4) and label smoothing (default 0).
"""
from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import optax

from t5x_sbs import names

# T5X defaults (t5x/models.py: DEFAULT_Z_LOSS, label_smoothing=0.0).
DEFAULT_Z_LOSS = 1e-4
DEFAULT_LABEL_SMOOTHING = 0.0


def task_weights(rationale_weight: float | None = None, alpha: float | None = None) -> dict[int, float]:
    """Per-task-id weights from either spelling: λ (w_label=1, w_rationale=λ) or α (α, 1−α)."""
    if (rationale_weight is None) == (alpha is None):
        raise ValueError("give exactly one of rationale_weight (λ) or alpha (α)")
    if alpha is not None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
        return {names.LABEL_TASK_ID: float(alpha), names.RATIONALE_TASK_ID: 1.0 - float(alpha)}
    if rationale_weight < 0:
        raise ValueError(f"rationale_weight (λ) must be >= 0, got {rationale_weight}")
    return {names.LABEL_TASK_ID: 1.0, names.RATIONALE_TASK_ID: float(rationale_weight)}


def token_cross_entropy(
    logits: jax.Array,
    targets: jax.Array,
    *,
    z_loss: float = DEFAULT_Z_LOSS,
    label_smoothing: float = DEFAULT_LABEL_SMOOTHING,
) -> tuple[jax.Array, jax.Array]:
    """Per-token cross-entropy (+ z-loss) in float32, as T5X's `cross_entropy_with_logits`.

    Returns (loss [B, L] including the z-loss term, z_loss term [B, L]).
    """
    logits = logits.astype(jnp.float32)
    vocab_size = logits.shape[-1]
    log_z = jax.nn.logsumexp(logits, axis=-1)
    if label_smoothing:
        # T5X smoothing: the rest of the mass spread over the other V−1 tokens, and the entropy
        # of the soft target subtracted so a perfect prediction has loss 0.
        confidence = 1.0 - label_smoothing
        low = label_smoothing / (vocab_size - 1)
        soft = jax.nn.one_hot(targets, vocab_size) * (confidence - low) + low
        floor = -(confidence * jnp.log(confidence) + (vocab_size - 1) * low * jnp.log(low + 1e-20))
        ce = optax.softmax_cross_entropy(logits, soft) - floor
    else:
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    z_term = z_loss * jnp.square(log_z)
    return ce + z_term, z_term


def task_token_counts(task_ids: jax.Array, loss_weights: jax.Array | None = None) -> dict[int, jax.Array]:
    """Number of target tokens of each task (the denominators of the formula)."""
    return {t: jnp.sum(_task_mask(task_ids, loss_weights, t)) for t in names.TASK_IDS.values()}


def _task_mask(task_ids: jax.Array, loss_weights: jax.Array | None, task_id: int) -> jax.Array:
    mask = (task_ids == task_id).astype(jnp.float32)
    if loss_weights is not None:
        mask = mask * (loss_weights > 0)
    return mask


def weighted_task_loss(
    logits: jax.Array,
    targets: jax.Array,
    task_ids: jax.Array,
    weights: Mapping[int, float],
    *,
    loss_weights: jax.Array | None = None,
    token_counts: Mapping[int, jax.Array] | None = None,
    z_loss: float = DEFAULT_Z_LOSS,
    label_smoothing: float = DEFAULT_LABEL_SMOOTHING,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """L = Σ_t w_t · CE_sum_t / max(1, N_t) and per-task figures for logging.

    `token_counts` (N_t) defaults to this batch's counts; gradient accumulation passes the whole
    batch's counts so the microbatch losses sum to exactly the full-batch loss.
    """
    per_token, z_term = token_cross_entropy(logits, targets, z_loss=z_loss, label_smoothing=label_smoothing)
    if token_counts is None:
        token_counts = task_token_counts(task_ids, loss_weights)
    loss = jnp.zeros((), jnp.float32)
    aux: dict[str, jax.Array] = {}
    for name, task_id in names.TASK_IDS.items():
        mask = _task_mask(task_ids, loss_weights, task_id)
        ce_sum = jnp.sum(per_token * mask)
        denom = jnp.maximum(1.0, token_counts[task_id])
        loss = loss + weights.get(task_id, 0.0) * ce_sum / denom
        aux[f"{name}_loss_sum"] = ce_sum
        aux[f"{name}_tokens"] = jnp.sum(mask)
        aux[f"{name}_z_loss_sum"] = jnp.sum(z_term * mask)
    return loss, aux

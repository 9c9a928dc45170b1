"""Train state and the jitted, sharded train / eval steps (the modern pjit: jit + NamedSharding).

One readable step: logits from the model (bf16 compute when the model config says so, f32
params), the weighted per-task loss, gradients summed over microbatches with the *whole* batch's
token counts as denominators (so accumulation is exact, not a mean of means), one optax update.
The train state is donated. Dropout gets a fresh key per step, folded from the seed and the step
number, so a resumed run draws exactly the keys an uninterrupted run would.

`Trainer.abstract_state()` and `Trainer.train_step` let `precompile` lower and compile the step
from shapes alone, without allocating parameters.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping

import flax
import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import optax

from t5x_sbs.models import decoding
from t5x_sbs.models.info import count_params
from t5x_sbs.trainer import losses
from t5x_sbs.trainer.partitioning import BATCH_AXES, Partitioner

MODEL_INPUTS = (
    "encoder_input_tokens",
    "decoder_input_tokens",
    "decoder_target_tokens",
    "encoder_segment_ids",
    "decoder_segment_ids",
    "encoder_positions",
    "decoder_positions",
    "decoder_encoder_segment_ids",  # shared-encoder batches only (t5x_sbs.trainer.shared_encoder)
)


@flax.struct.dataclass
class TrainState:
    """A plain pytree of arrays: what checkpoints save and restore."""

    step: jax.Array
    params: Any
    opt_state: Any


@gin.configurable
@dataclasses.dataclass(frozen=True)
class LossConfig:
    """λ (RATIONALE_WEIGHT) or the paper code's α; T5X z-loss and label smoothing."""

    rationale_weight: float | None = None  # None and no alpha: λ = 1
    alpha: float | None = None
    z_loss: float = losses.DEFAULT_Z_LOSS
    label_smoothing: float = losses.DEFAULT_LABEL_SMOOTHING

    def __post_init__(self):
        if self.alpha is not None and self.rationale_weight is not None:
            raise ValueError(f"LossConfig: both rationale_weight (λ = {self.rationale_weight}, gin RATIONALE_WEIGHT) "
                             f"and alpha (α = {self.alpha}) are given; they weigh the same two losses, give one")

    def weights(self) -> dict[int, float]:
        if self.alpha is not None:
            return losses.task_weights(alpha=self.alpha)
        return losses.task_weights(rationale_weight=1.0 if self.rationale_weight is None else self.rationale_weight)


def model_inputs(batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    return {k: batch[k] for k in MODEL_INPUTS if k in batch}


def batch_loss(model, params, batch, loss_config: LossConfig, *, dropout_rng=None, token_counts=None):
    """The loss of one (micro)batch and its per-task sums; dropout on iff a key is given."""
    rngs = {"dropout": dropout_rng} if dropout_rng is not None else {}
    logits = model.apply(
        {"params": params}, **model_inputs(batch), enable_dropout=dropout_rng is not None, rngs=rngs
    )
    return losses.weighted_task_loss(
        logits,
        batch["decoder_target_tokens"],
        batch["decoder_task_ids"],
        loss_config.weights(),
        loss_weights=batch.get("decoder_loss_weights"),
        token_counts=token_counts,
        z_loss=loss_config.z_loss,
        label_smoothing=loss_config.label_smoothing,
    )


def _split_microbatches(batch, num_microbatches: int):
    """[B, ...] -> [M, B/M, ...], microbatch i = rows i, i+M, ... so every shard feeds each one."""

    def split(x):
        if x.shape[0] % num_microbatches:
            raise ValueError(f"batch of {x.shape[0]} rows not divisible into {num_microbatches} microbatches")
        x = x.reshape((x.shape[0] // num_microbatches, num_microbatches) + x.shape[1:])
        x = jnp.swapaxes(x, 0, 1)
        spec = jax.sharding.PartitionSpec(None, BATCH_AXES, *([None] * (x.ndim - 2)))
        return jax.lax.with_sharding_constraint(x, spec)

    return jax.tree.map(split, batch)


def _task_metrics(aux: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    out = {}
    for task in ("label", "rationale"):
        out[f"{task}_loss"] = aux[f"{task}_loss_sum"] / jnp.maximum(1.0, aux[f"{task}_tokens"])
        out[f"{task}_tokens"] = aux[f"{task}_tokens"]
    out["z_loss"] = (aux["label_z_loss_sum"] + aux["rationale_z_loss_sum"]) / jnp.maximum(
        1.0, aux["label_tokens"] + aux["rationale_tokens"]
    )
    return out


def train_step(state: TrainState, batch, base_rng, *, model, tx, loss_config, schedule, num_microbatches=1):
    """One optimizer step on a global batch; returns the new state and scalar metrics."""
    rng = jax.random.fold_in(base_rng, state.step)
    counts = losses.task_token_counts(batch["decoder_task_ids"], batch.get("decoder_loss_weights"))
    grad_fn = jax.value_and_grad(
        lambda p, b, r: batch_loss(model, p, b, loss_config, dropout_rng=r, token_counts=counts), has_aux=True
    )
    if num_microbatches == 1:
        (loss, aux), grads = grad_fn(state.params, batch, rng)
    else:
        micro = _split_microbatches(batch, num_microbatches)

        def accumulate(total, xs):
            index, mb = xs
            out = grad_fn(state.params, mb, jax.random.fold_in(rng, index))
            return jax.tree.map(jnp.add, total, out), None

        first = jax.tree.map(lambda x: x[0], micro)
        zeros = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), jax.eval_shape(grad_fn, state.params, first, rng))
        ((loss, aux), grads), _ = jax.lax.scan(accumulate, zeros, (jnp.arange(num_microbatches), micro))
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {
        "loss": loss,
        "grad_norm": optax.global_norm(grads),
        "param_norm": optax.global_norm(params),
        "learning_rate": schedule(state.step),
        **_task_metrics(aux),
    }
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics


def eval_step(params, batch, *, model, loss_config):
    """Teacher-forced per-task sums (to be summed over batches, then divided): no dropout."""
    _, aux = batch_loss(model, params, batch, loss_config)
    return aux


class Trainer:
    """Builds the sharded state and the jitted steps for one model, optimizer and mesh."""

    def __init__(self, model, tx, partitioner: Partitioner, batch_shapes: Mapping[str, tuple],
                 *, loss_config: LossConfig, schedule, num_microbatches: int = 1, seed: int = 0):
        """`tx`: an optax transformation, or a function of the params' logical axes (a tree of
        PartitionSpecs of axis names) returning one, e.g. `partial(make_optimizer, config, steps)`
        (Adafactor factors by those axes)."""
        self.model, self.partitioner = model, partitioner
        self.loss_config, self.seed = loss_config, seed
        self.batch_shapes = dict(batch_shapes)
        self._abstract_vars = jax.eval_shape(self._init_variables, jax.random.key(0))
        abstract_params = nn.meta.unbox(self._abstract_vars)
        self.logical_axes = nn.get_partition_spec(self._abstract_vars)
        self.tx = tx = tx if isinstance(tx, optax.GradientTransformation) else tx(self.logical_axes)
        self.param_shardings = partitioner.logical_to_sharding(self.logical_axes)
        abstract_opt = jax.eval_shape(tx.init, abstract_params)
        self.state_shardings = TrainState(
            step=partitioner.replicated,
            params=self.param_shardings,
            opt_state=self._opt_state_shardings(abstract_opt, abstract_params),
        )
        self._abstract_state = TrainState(jax.ShapeDtypeStruct((), jnp.int32), abstract_params, abstract_opt)
        self.batch_shardings = {k: partitioner.batch_sharding(len(s)) for k, s in self.batch_shapes.items()}
        rep = partitioner.replicated
        step_fn = functools.partial(train_step, model=model, tx=tx, loss_config=loss_config,
                                    schedule=schedule, num_microbatches=num_microbatches)
        self.train_step = jax.jit(step_fn, in_shardings=(self.state_shardings, self.batch_shardings, rep),
                                  out_shardings=(self.state_shardings, rep), donate_argnums=(0,))
        self.eval_step = jax.jit(functools.partial(eval_step, model=model, loss_config=loss_config),
                                 in_shardings=(self.param_shardings, None), out_shardings=rep)  # any batch layout
        self._decoders: dict[int, Any] = {}

    def decode(self, params, encoder_input_tokens: jax.Array, max_decode_length: int):
        """Greedy decoding of a global [B, L] batch under the mesh: (tokens, scores) sharded over the
        batch axes like the input (gather them with multihost_utils.process_allgather)."""
        if max_decode_length not in self._decoders:
            rows = self.partitioner.batch_sharding
            self._decoders[max_decode_length] = jax.jit(
                decoding.greedy_fn(self.model, max_decode_length),
                in_shardings=(self.param_shardings, rows(2)), out_shardings=(rows(2), rows(1)))
        with self.partitioner.activation_context():
            return self._decoders[max_decode_length](params, encoder_input_tokens)

    def _init_variables(self, rng):
        dummy = {k: jnp.ones(s, jnp.int32) for k, s in self.batch_shapes.items() if k in MODEL_INPUTS}
        return self.model.init({"params": rng, "dropout": rng}, **dummy, enable_dropout=False)["params"]

    def _opt_state_shardings(self, abstract_opt, abstract_params):
        """Optimizer slots shaped like their parameter share its sharding; the rest replicate: the
        factored Adafactor statistics (vectors, or [layers, dim] when scanned) and the (1,)
        placeholders optax keeps for a param's unused slots. Adafactor's logical-axes view only
        re-shapes params whose second moment it factors, so a full-size slot is always param-shaped."""
        rep = self.partitioner.replicated
        return optax.tree_map_params(
            self.tx, lambda leaf, sharding, param: sharding if leaf.shape == param.shape else rep,
            abstract_opt, self.param_shardings, abstract_params, transform_non_params=lambda _: rep)

    def abstract_state(self) -> TrainState:
        """ShapeDtypeStructs carrying the target shardings (for restore and precompile)."""
        return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                            self._abstract_state, self.state_shardings)

    def abstract_batch(self) -> dict[str, jax.ShapeDtypeStruct]:
        return {k: jax.ShapeDtypeStruct(s, jnp.int32, sharding=self.batch_shardings[k])
                for k, s in self.batch_shapes.items()}

    @property
    def base_rng(self) -> jax.Array:
        return jax.random.key(self.seed + 1)

    def init_state(self, params=None) -> TrainState:
        """Fresh state from the seed, or around given (e.g. pretrained) params."""
        def init(rng, given):
            params = nn.meta.unbox(self._init_variables(rng)) if given is None else given
            return TrainState(jnp.zeros((), jnp.int32), params, self.tx.init(params))

        return jax.jit(init, out_shardings=self.state_shardings)(jax.random.key(self.seed), params)

    def num_params(self) -> int:
        return count_params(self._abstract_state.params)

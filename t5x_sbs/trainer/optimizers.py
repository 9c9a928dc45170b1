"""Optimizers and learning-rate schedules (optax), with T5X's defaults.

Adafactor as T5X finetunes T5: decay 0.8, no momentum, update clipping 1.0, factored second
moments, parameter-scaled updates, constant learning rate 1e-3. AdamW is the alternative.
Gradient clipping by global norm is chained in front when `grad_clip_norm` is set. Gradient
accumulation over microbatches lives in the trainer, next to the loss whose normaliser it needs.

Adafactor's second moments are factored by logical axes, as T5X does (`factor_by_logical_axes`):
optax alone factors a parameter over its two largest dims, and only if both are >= 128, so an
attention kernel [embed, heads, kv] (v1.1-xxl: [4096, 64, 64], scanned [layers, 4096, 64, 64])
keeps a full-size second moment. With the parameters' logical axes, `factor_by_logical_axes`
hands optax's factored-RMS rule a merged view instead: each run of adjacent ROW (embed) or
COLUMN (mlp, heads, kv, joined_kv, vocab) axes becomes one dim, BATCH axes (layers, stack) stay
as they are, so [layers, embed, heads, kv] is seen as [layers, embed, heads*kv]: statistics
[layers, embed] and [layers, heads*kv], kept per layer. optax does all the math; the view is a
reshape in and out. A parameter is re-viewed only when that merged view has exactly one ROW and
one COLUMN dim, both >= `min_dim_size_to_factor`, larger than every BATCH dim (so optax's
"two largest dims" are exactly those), and differs from the parameter's own shape. Everything
else is left to optax exactly as before (same state shapes, same numbers):
- 2-D kernels ([embed, mlp], [mlp, embed], [embed, vocab]) and the [vocab, embed] embedding:
  already ROW x COLUMN; optax's heuristic factors them (T5X also falls back to it for rank <= 2);
- scanned 2-D kernels [layers, embed, mlp]: the merged view is the shape itself; optax already
  factors embed x mlp with layers as a batch dim;
- 1-D scales [embed] and scanned [layers, embed]: nothing to factor (no COLUMN), full v;
- the relative-position bias [heads, relpos_buckets]: relpos_buckets is never factored (T5X:
  NONE), so it keeps a full v (it is tiny);
- axes that are not adjacent (would need a transpose), unknown axis names, no axes: unchanged.
Unlike T5X, update clipping and the parameter-scale RMS stay optax's: over the whole (stacked)
parameter, not per layer. The merged path keeps optax.adafactor's chain, so the optimizer state
has the same tree structure as with `factor_by_logical_axes=False`; only the factored attention
kernels' statistics change shape (a checkpoint written with the knob off resumes with it off).
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any

import gin
import jax
import jax.numpy as jnp
import optax

SCHEDULES = ("constant", "rsqrt", "linear")
OPTIMIZERS = ("adafactor", "adamw")

# How Adafactor factors each logical axis (T5X's `standard_logical_factor_rules`). Names not here
# (relpos_buckets, anything unknown) are not factored.
ROW, COLUMN, BATCH = "row", "column", "batch"
LOGICAL_FACTOR_RULES = {
    "embed": ROW,
    "mlp": COLUMN, "heads": COLUMN, "kv": COLUMN, "joined_kv": COLUMN, "vocab": COLUMN,
    "layers": BATCH, "stack": BATCH, "batch": BATCH,
}


@gin.configurable
@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    name: str = "adafactor"
    learning_rate: float = 1e-3
    schedule: str = "constant"  # constant (after warmup) | rsqrt | linear (decay to end_value)
    warmup_steps: int = 0
    end_learning_rate: float = 0.0  # linear decay target
    grad_clip_norm: float | None = None
    # Adafactor (T5X defaults)
    decay_rate: float = 0.8
    clipping_threshold: float | None = 1.0
    momentum: float | None = None
    factored: bool = True
    multiply_by_parameter_scale: bool = True
    min_dim_size_to_factor: int = 128  # optax/T5X: factor only dims at least this large
    # Factor second moments by the params' logical axes (T5X) rather than optax's two-largest-dims
    # heuristic; needs the axes (the Trainer passes them). False: plain optax.adafactor.
    factor_by_logical_axes: bool = True
    # AdamW
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0

    def __post_init__(self):
        if self.name not in OPTIMIZERS:
            raise ValueError(f"OptimizerConfig.name: {self.name!r} is not one of {OPTIMIZERS}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"OptimizerConfig.schedule: {self.schedule!r} is not one of {SCHEDULES}")


def make_schedule(config: OptimizerConfig, total_steps: int) -> optax.Schedule:
    """constant / linear: linear warmup from 0, then constant or linear decay to the end value.

    rsqrt is T5X's `rsqrt_decay`: flat at `learning_rate` for `warmup_steps`, then
    ∝ 1/sqrt(step) (T5X's base/sqrt(max(step, warmup)) with learning_rate = base/sqrt(warmup)).
    """
    lr, warmup = config.learning_rate, max(0, config.warmup_steps)
    if config.schedule == "rsqrt":
        plateau = max(1, warmup)
        return lambda count: lr * jnp.sqrt(plateau / jnp.maximum(count, plateau))
    if config.schedule == "constant":
        main = optax.constant_schedule(lr)
    else:
        main = optax.linear_schedule(lr, config.end_learning_rate, max(1, total_steps - warmup))
    if warmup == 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def factored_view(axes: tuple | None, shape: tuple[int, ...], min_dim_size_to_factor: int = 128
                  ) -> tuple[int, ...] | None:
    """The merged shape under which optax factors `shape` by its logical `axes`; None: leave as is.

    Adjacent axes of one kind (ROW / COLUMN / BATCH, `LOGICAL_FACTOR_RULES`) merge into one dim.
    See the module docstring for when a view is used.
    """
    if axes is None or len(axes) != len(shape):
        return None
    groups: list[list] = []  # [kind, size] per run of adjacent axes of one kind
    for name, size in zip(axes, shape):
        kind = LOGICAL_FACTOR_RULES.get(name)
        if kind is None:
            return None
        if groups and groups[-1][0] == kind:
            groups[-1][1] *= size
        else:
            groups.append([kind, size])
    kinds = [kind for kind, _ in groups]
    if kinds.count(ROW) != 1 or kinds.count(COLUMN) != 1:
        return None
    merged = tuple(size for _, size in groups)
    smaller = min(size for kind, size in groups if kind != BATCH)
    if merged == tuple(shape) or smaller < min_dim_size_to_factor:
        return None
    if any(kind == BATCH and size >= smaller for kind, size in groups):
        return None  # optax would pick the batch dim as one of its two largest
    return merged


def _is_axes(x) -> bool:
    return x is None or isinstance(x, tuple)  # jax's PartitionSpec is a tuple of names


def factor_by_logical_axes(inner: optax.GradientTransformation, logical_axes: Any,
                           min_dim_size_to_factor: int = 128) -> optax.GradientTransformationExtraArgs:
    """`inner` (optax's factored-RMS rule) applied to each param in its `factored_view`.

    `logical_axes`: a tree like the params whose leaves are tuples of logical axis names (e.g.
    `nn.get_partition_spec` of the boxed variables). Updates and params are reshaped into the view
    before `inner` and the updates reshaped back after; the state lives in the view's shapes.
    """
    inner = optax.with_extra_args_support(inner)
    flat, _ = jax.tree_util.tree_flatten_with_path(logical_axes, is_leaf=_is_axes)
    axes_by_path = {path: None if axes is None else tuple(axes) for path, axes in flat}

    def view(tree):
        def one(path, x):
            axes = axes_by_path.get(path)
            shape = None if axes is None else factored_view(axes, x.shape, min_dim_size_to_factor)
            return x if shape is None else jnp.reshape(x, shape)
        return None if tree is None else jax.tree_util.tree_map_with_path(one, tree)

    def init(params):
        return inner.init(view(params))

    def update(updates, state, params=None, **extra_args):
        merged, state = inner.update(view(updates), state, view(params), **extra_args)
        return jax.tree.map(lambda u, like: jnp.reshape(u, like.shape), merged, updates), state

    return optax.GradientTransformationExtraArgs(init, update)


def _adafactor(config: OptimizerConfig, schedule, logical_axes) -> optax.GradientTransformation:
    kwargs = dict(decay_rate=config.decay_rate, clipping_threshold=config.clipping_threshold,
                  momentum=config.momentum, factored=config.factored,
                  multiply_by_parameter_scale=config.multiply_by_parameter_scale,
                  min_dim_size_to_factor=config.min_dim_size_to_factor)
    if not (config.factor_by_logical_axes and config.factored):
        return optax.adafactor(learning_rate=schedule, **kwargs)
    if logical_axes is None:
        logging.getLogger(__name__).warning(
            "Adafactor: factor_by_logical_axes without the params' logical axes; "
            "using optax's two-largest-dims factoring")
        return optax.adafactor(learning_rate=schedule, **kwargs)
    # optax.adafactor's own chain (optax 0.2.x, same defaults and state layout), with its first
    # link, the factored second-moment rule, seen through the logical-axes view.
    chain = [factor_by_logical_axes(
        optax.scale_by_factored_rms(config.factored, config.decay_rate,
                                    min_dim_size_to_factor=config.min_dim_size_to_factor),
        logical_axes, config.min_dim_size_to_factor)]
    if config.clipping_threshold is not None:
        chain.append(optax.clip_by_block_rms(config.clipping_threshold))
    chain.append(optax.scale_by_learning_rate(schedule, flip_sign=False))
    if config.multiply_by_parameter_scale:
        chain.append(optax.scale_by_param_block_rms())
    if config.momentum is not None:
        chain.append(optax.ema(config.momentum, debias=False, accumulator_dtype=jnp.float32))
    chain.append(optax.scale(-1))
    return optax.chain(*chain)


def make_optimizer(config: OptimizerConfig, total_steps: int, logical_axes: Any = None
                   ) -> optax.GradientTransformation:
    """The optax transformation. `logical_axes`: the params' logical axis names (a tree like the
    params, e.g. `nn.get_partition_spec` of the boxed variables), for Adafactor's factoring; the
    Trainer supplies them when handed `functools.partial(make_optimizer, config, total_steps)`."""
    schedule = make_schedule(config, total_steps)
    if config.name == "adafactor":
        opt = _adafactor(config, schedule, logical_axes)
    else:
        opt = optax.adamw(schedule, b1=config.b1, b2=config.b2, eps=config.eps, weight_decay=config.weight_decay)
    if config.grad_clip_norm:
        opt = optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), opt)
    return opt

"""Parameter count and shapes of a T5 config, via `jax.eval_shape` (`t5x-sbs model-info` prints them)."""
from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from t5x_sbs.models.config import T5Config
from t5x_sbs.models.t5 import Transformer


def abstract_variables(config: T5Config) -> Any:
    """Boxed (logically partitioned) ShapeDtypeStructs of all variables; nothing is allocated."""
    tokens = jnp.ones((1, 1), jnp.int32)
    model = Transformer(config)
    return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), tokens, tokens, enable_dropout=False))


def param_shapes(config: T5Config) -> Any:
    """Unboxed ShapeDtypeStruct tree of the `params` collection."""
    return nn.meta.unbox(abstract_variables(config)["params"])


def logical_axes(config: T5Config) -> Any:
    """PartitionSpec tree of logical axis names for the `params` collection."""
    return nn.get_partition_spec(abstract_variables(config))["params"]


def count_params(tree: Any) -> int:
    """The one parameter count: elements of every leaf (arrays or ShapeDtypeStructs, boxed or not)."""
    return int(sum(math.prod(x.shape) for x in jax.tree.leaves(nn.meta.unbox(tree))))


def param_count(config: T5Config) -> int:
    """Number of parameters, from shapes only (`jax.eval_shape`, nothing allocated)."""
    return count_params(param_shapes(config))


def describe(config: T5Config) -> dict[str, Any]:
    shapes = param_shapes(config)
    leaves = jax.tree_util.tree_leaves(shapes)
    return {
        "params": count_params(shapes),
        "params_by_module": {name: count_params(part) for name, part in shapes.items()},
        "bytes": sum(math.prod(x.shape) * x.dtype.itemsize for x in leaves),
        "tensors": len(leaves),
        "config": config.to_dict(),
    }

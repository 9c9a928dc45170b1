"""One partitioner, T5X style: a (data, fsdp, model) mesh and logical-axis rules.

The model names every parameter and activation dimension with a logical axis ('batch', 'embed',
'mlp', 'heads', 'vocab', ...). The rules below map those names to mesh axes; the presets in
gin/partitioning/ only change the mesh shape (all data parallel, all FSDP, FSDP x tensor
parallel), so the same rules serve every layout. Flax resolves rules in order and never assigns a
mesh axis twice in one array, which is why 'batch' comes first: activations keep their batch
sharded over (data, fsdp) and leave 'embed' unsharded, while parameters shard 'embed' over fsdp.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Any, Mapping

import flax.linen as nn
import gin
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "model")
BATCH_AXES = ("data", "fsdp")

LOGICAL_AXIS_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", BATCH_AXES),
    ("vocab", "model"),
    ("mlp", "model"),
    ("heads", "model"),
    ("joined_kv", "model"),
    ("kv", None),
    ("embed", "fsdp"),
    ("length", None),
    ("relpos_buckets", None),
    ("abspos_buckets", None),
    ("layers", None),
    ("stack", None),
)


@gin.configurable
@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Mesh shape; one axis may be -1 (all remaining devices)."""

    data: int = -1
    fsdp: int = 1
    model: int = 1

    def shape(self, num_devices: int) -> tuple[int, int, int]:
        dims = [self.data, self.fsdp, self.model]
        if dims.count(-1) > 1:
            raise ValueError(f"MeshConfig: at most one axis may be -1, got {dims}")
        known = math.prod(d for d in dims if d != -1)
        if -1 in dims:
            if num_devices % known:
                raise ValueError(f"MeshConfig {dims}: {num_devices} devices not divisible by {known}")
            dims[dims.index(-1)] = num_devices // known
        if math.prod(dims) != num_devices:
            raise ValueError(f"MeshConfig {dims} needs {math.prod(dims)} devices, {num_devices} present")
        return tuple(dims)


# Data parallel over every device: the mesh when no MeshConfig is given (never read from gin here).
DATA_PARALLEL = MeshConfig(data=-1, fsdp=1, model=1)


def make_mesh(config: MeshConfig | None = None, devices: list | None = None) -> Mesh:
    """The (data, fsdp, model) mesh over all (global) devices, with Auto axis types."""
    config = config or DATA_PARALLEL
    devices = devices if devices is not None else jax.devices()
    shape = config.shape(len(devices))
    auto = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
    return jax.make_mesh(shape, MESH_AXES, axis_types=auto, devices=devices)


@dataclasses.dataclass(frozen=True)
class Partitioner:
    """Mesh + rules: turns logical specs into NamedShardings and host shards into global arrays."""

    mesh: Mesh
    rules: tuple[tuple[str, Any], ...] = LOGICAL_AXIS_RULES
    constrain_activations: bool = True

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, P())

    @property
    def batch_size_divisor(self) -> int:
        return math.prod(self.mesh.shape[a] for a in BATCH_AXES)

    def logical_to_sharding(self, logical_specs: Any) -> Any:
        """Pytree of logical PartitionSpecs (from nn.get_partition_spec) -> NamedShardings."""
        return nn.logical_to_mesh_sharding(logical_specs, self.mesh, list(self.rules))

    def batch_sharding(self, ndim: int = 2) -> NamedSharding:
        return NamedSharding(self.mesh, P(BATCH_AXES, *([None] * (ndim - 1))))

    def check_batch_size(self, global_batch: int) -> None:
        if global_batch % self.batch_size_divisor or global_batch % jax.process_count():
            raise ValueError(
                f"BATCH_SIZE={global_batch} must be divisible by data x fsdp = {self.batch_size_divisor} "
                f"and by the process count {jax.process_count()}"
            )

    def process_rows(self, global_rows: int) -> slice:
        """The block of global batch rows this process's devices hold under the batch sharding."""
        index_map = self.batch_sharding(1).addressable_devices_indices_map((global_rows,))
        starts = [idx[0].start or 0 for idx in index_map.values()]
        stops = [global_rows if idx[0].stop is None else idx[0].stop for idx in index_map.values()]
        return slice(min(starts), max(stops))

    def global_batch(self, local_batch: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
        """This process's rows -> global arrays sharded over the batch axes (any process count).

        Process i reads input shard i of process_count (input_pipeline); that is only right if its
        devices hold exactly the i-th block of rows, which we check rather than silently mix rows.
        """
        out = {}
        for key, local in local_batch.items():
            local = np.asarray(local)
            global_shape = (local.shape[0] * jax.process_count(),) + local.shape[1:]
            if not out:
                self._check_process_rows(global_shape[0], local.shape[0])
            sharding = self.batch_sharding(local.ndim)
            out[key] = jax.make_array_from_process_local_data(sharding, local, global_shape)
        return out

    def shard_global_batch(self, batch: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
        """A batch every process holds whole (evaluation) -> global arrays over the batch axes;
        each process copies only the rows its devices hold, for any mesh layout."""
        return {key: jax.make_array_from_callback(value.shape, self.batch_sharding(value.ndim),
                                                  lambda index, value=value: value[index])
                for key, value in ((k, np.asarray(v)) for k, v in batch.items())}

    def _check_process_rows(self, global_rows: int, local_rows: int) -> None:
        expected = slice(jax.process_index() * local_rows, (jax.process_index() + 1) * local_rows)
        held = self.process_rows(global_rows)
        if (held.start, held.stop) != (expected.start, expected.stop):
            raise ValueError(
                f"mesh {dict(self.mesh.shape)}: process {jax.process_index()} holds batch rows "
                f"[{held.start}, {held.stop}) but feeds rows [{expected.start}, {expected.stop}); keep "
                f"each process's devices on one block of the (data, fsdp) axes (e.g. 'model' within a host)")

    @contextlib.contextmanager
    def activation_context(self):
        """Context for tracing the steps: the model's logical constraints resolve against this mesh.

        Enter it around the first call of a jitted step (tracing happens then). With
        `constrain_activations=False` the mesh is not installed, the model's activation
        constraints are no-ops and XLA propagates shardings from the params and the batch alone.
        """
        with contextlib.ExitStack() as stack:
            stack.enter_context(nn.logical_axis_rules(list(self.rules)))
            if self.constrain_activations:
                stack.enter_context(jax.set_mesh(self.mesh))
            yield

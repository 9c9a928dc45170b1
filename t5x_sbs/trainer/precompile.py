"""`--run_mode=precompile`: compile the real train step ahead of time and report its cost.

Nothing is allocated: the trainer builds its state from `jax.eval_shape`, and the step is lowered
from `ShapeDtypeStruct`s that carry the target shardings, then compiled for the mesh. So an 11B
model compiles for an 8-device mesh on a laptop (`JAX_PLATFORMS=cpu` with 8 fake CPU devices),
and `compiled.memory_analysis()` / `cost_analysis()` say what one device needs:

- `state_bytes`: one device's shards of params + optimizer state (from the shardings);
- `argument_bytes`: the inputs of one device: its shard of params + optimizer state + batch
  (inputs the step never reads, e.g. T5's unused position features, are pruned by jit);
- `output_bytes`: the new state and metrics; `alias_bytes` of it reuse donated inputs;
- `temp_bytes`: everything live in between (activations kept for the backward pass, gradients,
  optimizer temporaries);
- `per_device_memory_bytes` = argument + output - alias + temp + generated code: the peak the
  buffer assignment plans for one device.
- `flops_per_step_per_device` from XLA's cost analysis (per device, as compiled: includes
  rematerialisation); `flops_per_step` = that times the device count. XLA counts a while-loop
  body once, so with `scan_layers=True` this misses all but one layer per stack;
- `model_flops_per_step`: 6·(N_enc·input tokens + N_dec·target tokens), the trainer's MFU
  numerator (t5x_sbs.trainer.metrics_logging); `step_time_at_peak_s` = that / (devices × peak) when
  PEAK_FLOPS_PER_DEVICE is bound (gin/hardware/*.gin): the step time at 100% MFU.

It compiles from the run's typed configs (t5x_sbs.trainer.configs.TrainConfigs) and a
`PrecompileConfig`, both read from gin once by the entry point (t5x_sbs.main).

On CPU these come from the CPU compiler's buffer assignment; the GPU/TPU compilers fuse and
schedule differently (usually less temp), so read them as a close estimate, not a guarantee.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from typing import Any

import gin
import jax

from t5x_sbs.trainer import builder
from t5x_sbs.trainer.configs import RunConfig, TrainConfigs
from t5x_sbs.trainer.metrics_logging import flops_per_step

# Bound before the user's gin files (t5x_sbs.main): a compile needs neither output macro.
UNSET_RUN_MACRO_DEFAULTS = ["MODEL_DIR = ''", "MIXTURE_OR_TASK_NAME = ''"]
UNSET_RUN_FIELDS = {"model_dir": "", "mixture_or_task_name": ""}


@dataclasses.dataclass(frozen=True)
class PrecompileConfig:
    """Batch, lengths, packing and microbatches come from the run's `RunConfig` (BATCH_SIZE,
    TASK_FEATURE_LENGTHS, ...); these are precompile's own, read from gin macros (macros
    need no import to be bound: `--gin.NUM_DEVICES=8 --gin.DEVICE_MEMORY_GB=80`)."""

    num_devices: int | None = None  # NUM_DEVICES: fake CPU devices to compile for; default: present
    device_memory_gb: float | None = None  # DEVICE_MEMORY_GB: when set, report whether it fits
    peak_flops_per_device: float | None = None  # PEAK_FLOPS_PER_DEVICE (gin/hardware/*.gin)

    @classmethod
    def from_gin(cls) -> "PrecompileConfig":
        """Read by the entry point, once, after the gin files are parsed."""
        return cls(num_devices=_macro("NUM_DEVICES"), device_memory_gb=_macro("DEVICE_MEMORY_GB"),
                   peak_flops_per_device=_macro("PEAK_FLOPS_PER_DEVICE"))


def _macro(name: str) -> Any:
    try:
        return gin.query_parameter(f"%{name}")
    except ValueError:
        return None


def compile_configs(configs: TrainConfigs) -> TrainConfigs:
    """The run's configs as precompile compiles them: the output-only fields are moot."""
    return configs.with_run(model_dir="", mixture_or_task_name="")


def ensure_devices(count: int | None) -> list:
    """Exactly `count` devices; on CPU asks for that many fake devices if JAX has not started."""
    if count is not None:
        try:
            jax.config.update("jax_num_cpu_devices", count)
        except RuntimeError:
            pass  # the backend is up already: check what it has below
    devices = jax.devices()
    if count is not None and len(devices) != count:
        raise ValueError(f"precompile: NUM_DEVICES={count} but JAX has {len(devices)} "
                         f"{devices[0].platform} devices: run with JAX_PLATFORMS=cpu "
                         f"XLA_FLAGS=--xla_force_host_platform_device_count={count} "
                         f"(or launch/local.sh --devices={count})")
    return devices


def build_trainer(configs: TrainConfigs, config: PrecompileConfig):
    """The training run's own (partitioner, Trainer): `builder.build`, nothing copied."""
    ensure_devices(config.num_devices)
    _, partitioner, step_trainer = builder.build(configs)
    return partitioner, step_trainer


def compile_train_step(partitioner, step_trainer) -> tuple[Any, float, float]:
    """Lower `Trainer.train_step` from abstract shapes (in the loop's activation context) and
    compile it: (compiled, lower seconds, compile seconds)."""
    start = time.perf_counter()
    with partitioner.activation_context():
        lowered = step_trainer.train_step.lower(step_trainer.abstract_state(), step_trainer.abstract_batch(),
                                                step_trainer.base_rng)
    lowered_at = time.perf_counter()
    compiled = lowered.compile()
    return compiled, lowered_at - start, time.perf_counter() - lowered_at


def state_bytes_per_device(abstract_state) -> int:
    """Bytes of params + optimizer state one device holds (its shards; the largest shard)."""
    return sum(math.prod(x.sharding.shard_shape(x.shape)) * x.dtype.itemsize
               for x in jax.tree.leaves(abstract_state))


def report(compiled, step_trainer, configs: TrainConfigs, config: PrecompileConfig, *,
           lower_s: float, compile_s: float) -> dict[str, Any]:
    """The one JSON object precompile prints."""
    memory = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost  # older JAX: one dict per module
    mesh, model_config = step_trainer.partitioner.mesh, step_trainer.model.config
    total = (memory.argument_size_in_bytes + memory.output_size_in_bytes - memory.alias_size_in_bytes
             + memory.temp_size_in_bytes + memory.generated_code_size_in_bytes)
    flops = float(cost.get("flops", 0.0))
    run: RunConfig = configs.run
    lengths = run.task_feature_lengths
    model_flops = flops_per_step(step_trainer.abstract_state().params, run.batch_size,
                                 lengths["inputs"], lengths["targets"])
    out = {
        "params": step_trainer.num_params(),
        "mesh": dict(mesh.shape),
        "num_devices": mesh.size,
        "platform": mesh.devices.flat[0].platform,
        "batch_size": run.batch_size,
        "inputs_length": run.task_feature_lengths["inputs"],
        "targets_length": run.task_feature_lengths["targets"],
        "packed": run.pack,
        "num_microbatches": run.num_microbatches,
        "optimizer": configs.optimizer.name,
        "dtype": model_config.dtype,
        "param_dtype": model_config.param_dtype,
        "scan_layers": model_config.scan_layers,
        "remat_policy": model_config.remat_policy,
        "state_bytes": state_bytes_per_device(step_trainer.abstract_state()),
        "argument_bytes": memory.argument_size_in_bytes,
        "output_bytes": memory.output_size_in_bytes,
        "alias_bytes": memory.alias_size_in_bytes,
        "temp_bytes": memory.temp_size_in_bytes,
        "generated_code_bytes": memory.generated_code_size_in_bytes,
        "per_device_memory_bytes": total,
        "per_device_memory_gb": round(total / 1e9, 3),
        "flops_per_step_per_device": flops,
        "flops_per_step": flops * mesh.size,
        "model_flops_per_step": model_flops,
        # Bytes JAX holds after compiling: ~0 shows the model was never allocated.
        "live_bytes_after_compile": sum(x.nbytes for x in jax.live_arrays()),
        "lower_time_s": round(lower_s, 2),
        "compile_time_s": round(compile_s, 2),
    }
    peak = config.peak_flops_per_device
    if peak:
        out["step_time_at_peak_s"] = model_flops / (mesh.size * float(peak))
    if config.device_memory_gb is not None:
        out["device_memory_gb"] = config.device_memory_gb
        out["fits"] = total <= config.device_memory_gb * 1e9
    return out


def run(configs: TrainConfigs, config: PrecompileConfig) -> int:
    """`main --run_mode=precompile` on the run's typed configs and the PrecompileConfig.

    Prints one JSON object; returns 1 when `device_memory_gb` is set and the step does not fit.
    """
    configs = compile_configs(configs)
    partitioner, step_trainer = build_trainer(configs, config)
    compiled, lower_s, compile_s = compile_train_step(partitioner, step_trainer)
    result = report(compiled, step_trainer, configs, config, lower_s=lower_s, compile_s=compile_s)
    print(json.dumps(result), flush=True)
    return 0 if result.get("fits", True) else 1

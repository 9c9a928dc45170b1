"""Training throughput: tokens/s and MFU of the real train step for a gin model size and batch,
on whatever devices are present (CPU, one GPU, a pod slice).

    python benchmarks/train_step.py --gin_file=gin/models/t5_1_1/large.gin --batch=32 \
        --inputs=512 --targets=256 --dtype=bfloat16 --hardware=gin/hardware/h100.gin

Random tokens fill every position (no padding), half the rows label-task and half rationale-task,
so tokens/s counts real work. MFU = 6·N·tokens/s / (devices × PEAK_FLOPS_PER_DEVICE), the
trainer's own formula (t5x_sbs.trainer.metrics_logging). Final line: `ratio: MFU / 0.40` (the H100 goal).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

GOAL_MFU = 0.40


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gin_file", default="gin/models/t5_1_1/tiny.gin", help="model size")
    p.add_argument("--partitioning", default="gin/partitioning/dp.gin")
    p.add_argument("--hardware", default=None, help="gin/hardware/*.gin for the peak (default: by device kind)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--inputs", type=int, default=256)
    p.add_argument("--targets", type=int, default=128)
    p.add_argument("--steps", type=int, default=5, help="timed steps after 2 warm-up steps")
    p.add_argument("--dtype", default="float32", help="activation dtype (params stay float32)")
    p.add_argument("--microbatches", type=int, default=1)
    p.add_argument("--gin", action="append", default=[], help="extra gin binding 'KEY = VALUE'")
    return p.parse_args(argv)


def default_hardware() -> str:
    import jax

    kind = jax.devices()[0].device_kind.lower()
    for key, name in (("h200", "h200"), ("h100", "h100"), ("a100", "a100"), ("v5p", "v5p"), ("v5", "v5e"), ("v4", "v4")):
        if key in kind:
            return f"gin/hardware/{name}.gin"
    return "gin/hardware/cpu.gin"


def synthetic_batch(batch: int, inputs: int, targets: int, vocab: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    tgt = rng.integers(2, vocab, (batch, targets), dtype=np.int32)
    return {"encoder_input_tokens": rng.integers(2, vocab, (batch, inputs), dtype=np.int32),
            "decoder_target_tokens": tgt,
            "decoder_input_tokens": np.concatenate([np.zeros((batch, 1), np.int32), tgt[:, :-1]], axis=1),
            "decoder_loss_weights": np.ones((batch, targets), np.int32),
            "decoder_task_ids": np.repeat(np.array([[1], [2]] * (batch // 2) + [[1]] * (batch % 2), np.int32),
                                          targets, axis=1)}


def measure(args) -> dict:
    """Compiles the real train step for `args` and times it: seconds per step and what they mean."""
    import gin
    import jax

    from t5x_sbs.trainer import configs, train_loop
    from t5x_sbs.trainer.metrics_logging import flops_per_step

    hardware = args.hardware or default_hardware()
    configs.parse_gin([args.gin_file, args.partitioning, hardware], [f"T5Config.dtype = '{args.dtype}'", *args.gin])
    peak = gin.query_parameter("%PEAK_FLOPS_PER_DEVICE")
    run_configs = configs.from_gin(model_dir="", mixture_or_task_name="", train_steps=1000, batch_size=args.batch,
                                   pack=False, num_microbatches=args.microbatches,
                                   task_feature_lengths={"inputs": args.inputs, "targets": args.targets})
    config, part, trainer = train_loop.build(run_configs)
    batch = part.global_batch(synthetic_batch(args.batch, args.inputs, args.targets, config.vocab_size))
    flops = flops_per_step(trainer.abstract_state().params, args.batch, args.inputs, args.targets)
    state = trainer.init_state()
    with part.activation_context():
        t0 = time.perf_counter()
        for _ in range(2):  # compile + one warm step
            state, metrics = trainer.train_step(state, batch, trainer.base_rng)
        jax.block_until_ready(metrics["loss"])
        compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(args.steps):
            state, metrics = trainer.train_step(state, batch, trainer.base_rng)
        jax.block_until_ready(metrics["loss"])
        seconds = (time.perf_counter() - t0) / args.steps
    return {"seconds": seconds, "compile_s": compile_s, "loss": float(metrics["loss"]), "flops": flops, "peak": peak,
            "hardware": hardware, "params": trainer.num_params(), "devices": jax.device_count(),
            "device_kind": jax.devices()[0].device_kind}


def main(argv=None) -> int:
    args = parse_args(argv)
    m = measure(args)
    tokens = args.batch * (args.inputs + args.targets)
    mfu = m["flops"] / m["seconds"] / (m["devices"] * m["peak"])
    print(f"model {args.gin_file} ({m['params'] / 1e6:.1f}M params, {args.dtype} compute), "
          f"batch {args.batch} x ({args.inputs} + {args.targets}) tokens, {m['devices']} x "
          f"{m['device_kind']}, peak {m['peak']:.3g} FLOP/s per device ({m['hardware']})")
    print(f"compile+warmup: {m['compile_s']:.1f} s   step: {m['seconds'] * 1e3:.1f} ms   loss: {m['loss']:.3f}")
    print(f"tokens/s: {tokens / m['seconds']:.0f}   model FLOPs/step: {m['flops']:.3g}   MFU: {mfu:.4f}")
    print(f"ratio: {mfu / GOAL_MFU:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

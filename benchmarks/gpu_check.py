"""The GPU check (issue #15, point 4): one command, one JSON, within ~8 minutes on one GPU.

    python benchmarks/gpu_check.py                # on the GPU host (jax with CUDA)
    python benchmarks/gpu_check.py --dry_run      # CPU: tiny model, a few steps (CI runs this)

Each part runs in its own subprocess (so each reads its own peak device memory) and the parent
prints one JSON object:
- `throughput.{base,large}`: T5 v1.1 base and large, bf16 compute (f32 params), Adafactor, the
  trainer's own step, compiled ahead of time from shapes exactly as `--run_mode=precompile`
  does (t5x_sbs.trainer.precompile); that compiled step is then run on random full rows (no padding):
  tokens/s, MFU = 6·N·tokens/s / PEAK_FLOPS_PER_DEVICE (gin/hardware/*.gin by device kind), the
  device's `peak_bytes_in_use` against the compiler's `per_device_memory_bytes` estimate.
- `resume`: the built-in arithmetic task, step-by-step mixture, through the real train loop
  (`train_loop.train`, Orbax checkpoints, the input pipeline's saved position): a run to step
  N/2 that checkpoints, a second run that resumes it to N (default 200), and an uninterrupted
  run to N; `resume_equal` says whether the two runs' final losses are equal.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# (size gin file, global batch, inputs, targets) for the throughput parts.
GPU_SIZES = {"base": ("gin/models/t5_1_1/base.gin", 64, 512, 256),
             "large": ("gin/models/t5_1_1/large.gin", 32, 512, 256)}
DRY_SIZES = {"tiny": ("gin/models/t5_1_1/tiny.gin", 8, 32, 16)}
DRY_BINDINGS = ["T5Config.vocab_size = 512", "T5Config.num_encoder_layers = 1", "T5Config.num_decoder_layers = 1"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry_run", action="store_true", help="CPU: tiny model, 3 timed steps, resume 4 -> 8 steps")
    p.add_argument("--steps", type=int, default=10, help="timed steps per size (after 2 warm-up steps)")
    p.add_argument("--resume_steps", type=int, default=200)
    p.add_argument("--part", default=None, help=argparse.SUPPRESS)  # internal: run one part
    p.add_argument("--size", default=None, help=argparse.SUPPRESS)
    p.add_argument("--work_dir", default=None, help=argparse.SUPPRESS)
    p.add_argument("--timeout", type=int, default=300, help="seconds per part")
    return p.parse_args(argv)


def device_peak_bytes():
    """The device allocator's peak (GPU/TPU); None where the backend keeps no statistics (CPU)."""
    import jax

    stats = jax.local_devices()[0].memory_stats()
    return None if not stats else stats.get("peak_bytes_in_use")


def throughput_part(args) -> dict:
    """Compile the trainer's step from shapes (precompile's path), then time that executable."""
    import gin
    import jax

    from benchmarks.train_step import default_hardware, synthetic_batch
    from t5x_sbs.trainer import configs, precompile

    sizes = DRY_SIZES if args.dry_run else GPU_SIZES
    gin_file, batch_size, inputs, targets = sizes[args.size]
    hardware = default_hardware()
    bindings = ["T5Config.dtype = 'bfloat16'", "T5Config.scan_layers = True", "T5Config.dropout_rate = 0.0"]
    configs.parse_gin([gin_file, "gin/partitioning/dp.gin", hardware], bindings + (DRY_BINDINGS if args.dry_run else []))
    peak_flops = float(gin.query_parameter("%PEAK_FLOPS_PER_DEVICE"))
    run_configs = configs.from_gin(model_dir="", mixture_or_task_name="", batch_size=batch_size, pack=False,
                                   task_feature_lengths={"inputs": inputs, "targets": targets})
    precompile_config = precompile.PrecompileConfig(peak_flops_per_device=peak_flops)
    part, trainer = precompile.build_trainer(run_configs, precompile_config)
    compiled, lower_s, compile_s = precompile.compile_train_step(part, trainer)
    estimate = precompile.report(compiled, trainer, run_configs, precompile_config, lower_s=lower_s,
                                 compile_s=compile_s)
    state = trainer.init_state()
    batch = part.global_batch(synthetic_batch(batch_size, inputs, targets, trainer.model.config.vocab_size))
    for _ in range(2):  # warm-up
        state, metrics = compiled(state, batch, trainer.base_rng)
    jax.block_until_ready(metrics["loss"])
    start = time.perf_counter()
    for _ in range(args.steps):
        state, metrics = compiled(state, batch, trainer.base_rng)
    jax.block_until_ready(metrics["loss"])
    step_s = (time.perf_counter() - start) / args.steps
    peak_bytes = device_peak_bytes()
    devices = jax.device_count()
    return {"params": estimate["params"], "batch_size": batch_size, "inputs_length": inputs, "targets_length": targets,
            "device_kind": jax.devices()[0].device_kind, "devices": devices, "hardware_gin": hardware,
            "peak_flops_per_device": peak_flops, "step_s": step_s, "compile_s": round(compile_s, 2),
            "tokens_per_s": batch_size * (inputs + targets) / step_s,
            "mfu": estimate["model_flops_per_step"] / step_s / (devices * peak_flops),
            "loss": float(metrics["loss"]), "peak_device_bytes": peak_bytes,
            "estimated_device_bytes": estimate["per_device_memory_bytes"],
            "peak_over_estimate": None if peak_bytes is None else peak_bytes / estimate["per_device_memory_bytes"]}


def arith_task(work_dir: str, sizes: dict) -> None:
    """The built-in task's files, the scripted teacher's store, and its registered SeqIO tasks."""
    import contextlib
    import io

    from t5x_sbs import cli
    from t5x_sbs.data import arith

    data_dir, store = os.path.join(work_dir, "data"), os.path.join(work_dir, "teacher.jsonl")
    paths = arith.write_splits(data_dir, seed=0, sizes=sizes)
    if not os.path.exists(store):
        for split in arith.SPLITS:
            with contextlib.redirect_stdout(io.StringIO()):
                code = cli.main(["rationales", "--dataset", "arith", "--data_dir", data_dir, "--split", split,
                                 "--teacher", "scripted:arith", "--out", store, "--no_progress"])
            if code != 0:
                raise RuntimeError(f"scripted teacher failed on {split}")
    from t5x_sbs.tasks.custom import register_jsonl_dataset

    register_jsonl_dataset("arith", train_path=paths["train"], validation_path=paths["validation"],
                           test_path=paths["test"], input_fields=("question",), label_field="answer",
                           id_field="id", teacher_file=store)


def train_to(model_dir: str, steps: int, args, spm_path: str | None = None) -> dict:
    import gin

    from t5x_sbs.trainer import configs, train_loop

    gin_file = "gin/models/t5_1_1/tiny.gin" if args.dry_run else "gin/models/t5_1_1/small.gin"
    lengths = {"inputs": 48, "targets": 32} if args.dry_run else {"inputs": 64, "targets": 64}
    bindings = [f"MODEL_DIR = '{model_dir}'", "MIXTURE_OR_TASK_NAME = 'arith_sbs_llm'", f"TRAIN_STEPS = {steps}",
                f"TASK_FEATURE_LENGTHS = {lengths}", "BATCH_SIZE = 16", "RATIONALE_WEIGHT = 1.0",
                f"SPM_PATH = {spm_path!r}",
                f"CHECKPOINT_EVERY = {max(1, args.resume_steps // 2)}", f"EVAL_EVERY = {args.resume_steps}",
                "RunConfig.eval_batches = 1", "RunConfig.test_batches = 1", "RunConfig.auto_vocab_size = 256",
                "T5Config.vocab_size = 256", "T5Config.dropout_rate = 0.0", "T5Config.dtype = 'bfloat16'"]
    gin.clear_config()
    configs.parse_gin([gin_file, "gin/runs/sbs.gin"], bindings + (DRY_BINDINGS[1:] if args.dry_run else []))
    start = time.perf_counter()
    result = train_loop.train(configs.from_gin())
    return {"wall_s": round(time.perf_counter() - start, 2), "loss": float(result["loss"])}


def resume_part(args) -> dict:
    """Half the run, a resumed second half, and the same run uninterrupted."""
    n = args.resume_steps
    arith_task(args.work_dir, {"train": 64, "validation": 16, "test": 16} if args.dry_run else
               {"train": 2000, "validation": 100, "test": 100})
    resumed_dir, straight_dir = os.path.join(args.work_dir, "resumed"), os.path.join(args.work_dir, "straight")
    first = train_to(resumed_dir, n // 2, args)
    second = train_to(resumed_dir, n, args)
    straight = train_to(straight_dir, n, args, spm_path=os.path.join(resumed_dir, "spiece.model"))
    with open(os.path.join(resumed_dir, "metrics.jsonl")) as f:
        steps = sorted({row["step"] for row in map(json.loads, f) if "loss" in row})
    return {"steps": n, "first_half": first, "second_half": second, "uninterrupted": straight,
            "logged_steps": [steps[0], steps[-1]] if steps else None,
            "resume_equal": second["loss"] == straight["loss"], "peak_device_bytes": device_peak_bytes()}


def run_part(part: str, size: str | None, args, work_dir: str) -> dict:
    """One part in a fresh process: its own JAX runtime and peak-memory counter."""
    cmd = [sys.executable, os.path.abspath(__file__), f"--part={part}", f"--work_dir={work_dir}",
           f"--steps={args.steps}", f"--resume_steps={args.resume_steps}"]
    cmd += [f"--size={size}"] if size else []
    cmd += ["--dry_run"] if args.dry_run else []
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.timeout} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": f"rc {proc.returncode}: {proc.stderr.strip().splitlines()[-1:] or ['']}"[:2000]}
    return {**json.loads(lines[-1]), "part_wall_s": round(time.perf_counter() - start, 1)}


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.dry_run:
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
        if args.resume_steps == 200:
            args.resume_steps, args.steps = 8, 3
    if args.part:  # a child: one part, one JSON line
        result = throughput_part(args) if args.part == "throughput" else resume_part(args)
        print(json.dumps(result), flush=True)
        return 0
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as work_dir:
        sizes = DRY_SIZES if args.dry_run else GPU_SIZES
        out = {"dry_run": args.dry_run,
               "throughput": {size: run_part("throughput", size, args, work_dir) for size in sizes},
               "resume": run_part("resume", None, args, work_dir)}
    out["wall_s"] = round(time.perf_counter() - start, 1)
    out["ok"] = all("error" not in v for v in [*out["throughput"].values(), out["resume"]])
    print(json.dumps(out), flush=True)
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

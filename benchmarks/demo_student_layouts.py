"""The demo student's train step in each batch layout: ms per step and examples per second.

Times the real jitted step of a finished demo's student (`t5x-sbs demo`: its data, teacher store,
pretrained checkpoint and gin) on the batches its own input pipeline makes, one process pinned to
one core as `--jobs` workers are. Layouts: packed rows (the mixture's label and rationale rows
packed into BATCH rows of 128 + 32 tokens; finetuning: label rows only), and length buckets
(`RunConfig.length_bucket_window`, one example a row, BATCH examples a step) with the step-by-step
example as two rows (`paired`) or one encoder pass (`shared_encoder`). Every step shape is compiled
before the clock. Last line: `ratio: examples/s of the fastest step-by-step layout / packed mixture`.

    python benchmarks/demo_student_layouts.py --out_dir runs/demo [--steps 200]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import _common  # noqa: F401  (puts the repo on sys.path)
from sbs_throughput import examples_in

LAYOUTS = (("standard_finetune", "mixture", 0), ("standard_finetune", "mixture", 32),
           ("sbs_gold", "mixture", 0), ("sbs_gold", "paired", 32), ("sbs_gold", "shared_encoder", 32))


def layout_spec(out_dir: str, pretrained: str, method: str, loss_mode: str, window: int, batch_size: int):
    from t5x_sbs.experiments import demo, demo_axes

    config = dataclasses.replace(demo_axes.AxesConfig(out_dir=out_dir).demo(), batch_size=batch_size,
                                 length_bucket_window=window, sbs_loss_mode=loss_mode)
    student = demo_axes.find_student(pretrained)
    data_dir = os.path.join(out_dir, "data")
    bindings = demo.student_bindings(config, data_dir, config.data.store)
    spec = demo.student_spec(config, method, 0, student.spm_path, data_dir, bindings, student)
    return dataclasses.replace(spec, model_dir=os.path.join("/tmp", "demo_student_layouts"))


def time_layout(spec, steps: int) -> dict:
    import jax

    from t5x_sbs.experiments import runner
    from t5x_sbs.trainer import builder, input_pipeline, train_loop

    configs = runner.train_configs(spec)
    _, part, trainer = builder.build(configs)
    builder.resolve_vocabulary(configs.run, configs.model, train_if_missing=False)
    task = input_pipeline.training_task_name(configs.run.mixture_or_task_name, configs.run.loss_mode)
    stream = train_loop._train_batches(configs.run, task, None)
    batches = [next(stream) for _ in range(steps)]
    shapes = {(b["encoder_input_tokens"].shape, b["decoder_target_tokens"].shape): b for b in batches}
    with part.activation_context():
        state = trainer.init_state()
        for batch in shapes.values():  # compile every shape before the clock
            state, _ = trainer.train_step(state, part.global_batch(batch), trainer.base_rng)
        jax.block_until_ready(state)
        start = time.perf_counter()
        for batch in batches:
            state, _ = trainer.train_step(state, part.global_batch(batch), trainer.base_rng)
        jax.block_until_ready(state)
    seconds = time.perf_counter() - start
    examples = sum(examples_in(b) for b in batches)
    return {"ms_per_step": 1e3 * seconds / steps, "examples_per_step": examples / steps,
            "examples_per_s": examples / seconds, "shapes": len(shapes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out_dir", default="runs/demo", help="a finished demo")
    parser.add_argument("--pretrained", default="", help="its pretrained student (default: the one its results.json names)")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as a --jobs worker
    pretrained = args.pretrained or demo_student(args.out_dir)
    results = {}
    for method, loss_mode, window in LAYOUTS:
        spec = layout_spec(args.out_dir, pretrained, method, loss_mode, window, args.batch_size)
        name = " ".join([method] + ([loss_mode] if method.startswith("sbs") else [])
                        + [f"buckets {window}" if window else "packed"])
        results[name] = found = time_layout(spec, args.steps)
        print(f"{name}: {found['ms_per_step']:.1f} ms/step, {found['examples_per_step']:.1f} examples/step, "
              f"{found['examples_per_s']:.0f} examples/s, {found['shapes']} step shape(s)")
    sbs = {k: v["examples_per_s"] for k, v in results.items() if k.startswith("sbs")}
    print(f"ratio: {max(sbs.values()) / sbs['sbs_gold mixture packed']:.2f}")


def demo_student(out_dir: str) -> str:
    """The pretrained student the demo's students started from (its results.json rows name it)."""
    with open(os.path.join(out_dir, "results.json"), encoding="utf-8") as f:
        return os.path.dirname(json.load(f)["rows"][0]["pretrained"])


if __name__ == "__main__":
    main()

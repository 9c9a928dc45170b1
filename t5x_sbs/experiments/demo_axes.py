"""More students from a finished `t5x-sbs demo`: other data fractions, budgets or loss modes.

Reuses the demo's data, teacher store and pretrained student (`--out_dir`, `--pretrained`), so
the rows are comparable with the demo's own (same test questions, same starting point), and
appends one JSON row per student (with per-question correctness) to `--rows`:

    python -m t5x_sbs.experiments.demo_axes --methods sbs_teacher,standard_finetune \
        --fractions 0.5,0.25 --seeds 0,1,2 --rows runs/data_axis/rows.jsonl
    python -m t5x_sbs.experiments.demo_axes --methods sbs_teacher@shared_encoder --fractions 1 ...

`METHOD@LOSS_MODE` trains a method with another loss mode. Rows already in `--rows` are skipped.
"""
from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import time

from t5x_sbs.experiments import demo, pretrained, runner, tables
from t5x_sbs.names import LOSS_MODES
from t5x_sbs.user_errors import int_list, positive_int


def fractions(text: str) -> list[float]:
    try:
        values = [float(f) for f in text.split(",") if f.strip()]
    except ValueError:
        values = []
    if not values or not all(0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"must be comma-separated fractions in (0, 1], e.g. 0.5,0.25; got {text!r}")
    return values


def methods(text: str) -> list[str]:
    out = [m.strip() for m in text.split(",") if m.strip()]
    for item in out:
        method, _, mode = item.partition("@")
        if method not in tables.METHODS or (mode and mode not in LOSS_MODES):
            raise argparse.ArgumentTypeError(f"{item!r}: METHOD from {list(tables.METHODS)}, "
                                             f"optionally @LOSS_MODE from {list(LOSS_MODES)}")
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--out_dir", default="runs/demo", help="a finished demo (its data/ and teacher/)")
    add("--pretrained", default="", help="its pretrained student dir (default: the only one under runs/pretrained)")
    add("--methods", type=methods, default="sbs_teacher,standard_finetune",
        help="comma-separated METHOD or METHOD@LOSS_MODE")
    add("--fractions", type=fractions, default="0.5,0.25", help="comma-separated fractions of the train examples (nested)")
    add("--seeds", type=int_list, default="0,1,2")
    add("--train_steps", type=positive_int, default=1000)
    add("--early_stopping_patience", type=positive_int, default=2)
    add("--rows", default="runs/data_axis/rows.jsonl")


def _student(path: str) -> dict:
    if not path:
        found = sorted(glob.glob("runs/pretrained/*/model"))
        if len(found) != 1:
            raise SystemExit(f"demo_axes: give --pretrained (runs/pretrained holds {len(found)} students)")
        path = os.path.dirname(found[0])
    spm = os.path.join(path, "spiece.model")
    return {"initial_checkpoint": os.path.join(path, "model"), "vocab_rows": pretrained.vocab_rows(spm), "spm_path": spm}


def _done(rows_path: str) -> set[tuple]:
    if not os.path.isfile(rows_path):
        return set()
    with open(rows_path, encoding="utf-8") as f:
        return {(r["method"], r["fraction"], r["seed"]) for r in map(json.loads, f)}


def train_cell(demo_args, method_mode: str, fraction: float, seed: int, student: dict, bindings) -> dict:
    method, _, loss_mode = method_mode.partition("@")
    spec = demo.student_spec(demo_args, method, seed, student["spm_path"], os.path.join(demo_args.out_dir, "data"),
                             bindings, student)
    model_dir = os.path.join(os.path.dirname(demo_args.rows), f"{method_mode.replace('@', '_')}_frac{fraction}_seed{seed}")
    spec = dataclasses.replace(spec, fraction=fraction, model_dir=model_dir, loss_mode=loss_mode or spec.loss_mode)
    start = time.time()
    final = runner.train(spec)
    return {"method": method_mode, "fraction": fraction, "seed": seed, **runner.score(model_dir),
            "train_steps": spec.train_steps, "patience": spec.early_stopping_patience, "steps_run": final.get("step"),
            "wall_s": round(time.time() - start, 1), "model_dir": model_dir, "test_correct": runner.test_correctness(spec)}


def run(args) -> int:
    demo_parser = argparse.ArgumentParser()
    demo.add_arguments(demo_parser)
    demo_args = demo_parser.parse_args(["--out_dir", args.out_dir, "--train_steps", str(args.train_steps),
                                        "--early_stopping_patience", str(args.early_stopping_patience)])
    demo_args.rows = args.rows
    store = os.path.join(args.out_dir, "teacher", "train.jsonl")
    bindings = demo.register(demo_args, os.path.join(args.out_dir, "data"), store)
    student, done = _student(args.pretrained), _done(args.rows)
    runner.enable_compilation_cache(os.path.join(args.out_dir, "jax_cache"))
    os.makedirs(os.path.dirname(os.path.abspath(args.rows)), exist_ok=True)
    for fraction in args.fractions:
        for method_mode in args.methods:
            for seed in (int(s) for s in args.seeds.split(",")):
                if (method_mode, fraction, seed) in done:
                    continue
                row = train_cell(demo_args, method_mode, fraction, seed, student, bindings)
                with open(args.rows, "a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")
                print(f"{method_mode} {fraction:g} seed {seed}: {row['steps_run']} steps (best {row['best_step']}), "
                      f"validation {100 * row['val_accuracy']:.1f}%, test {100 * row['test_accuracy']:.1f}%", flush=True)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    raise SystemExit(run(parser.parse_args()))

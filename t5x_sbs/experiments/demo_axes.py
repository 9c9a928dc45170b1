"""More students from a finished `t5x-sbs demo`: other data fractions, budgets or loss modes.

Reuses the demo's data, teacher store and pretrained student (`--out_dir`, `--pretrained`), so
the rows are comparable with the demo's own (same test questions, same starting point), and
appends one JSON row per student (with per-question correctness) to `--rows`:

    python -m t5x_sbs.experiments.demo_axes --methods sbs_teacher,standard_finetune \
        --fractions 0.5,0.25 --seeds 0,1,2 --rows runs/data_axis/rows.jsonl
    python -m t5x_sbs.experiments.demo_axes --methods sbs_teacher@shared_encoder --fractions 1 ...

`METHOD@LOSS_MODE` trains a method with another loss mode. Rows already in `--rows` are skipped.
The flags are `t5x_sbs.cli.demo_axes`'s; this module is the behaviour.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os
import runpy

from t5x_sbs.experiments import demo, preparation, pretrained, runner
from t5x_sbs.experiments.preparation import Say, say_line


@dataclasses.dataclass(frozen=True)
class AxesConfig:
    """Which students to add to a finished demo, and where their rows go."""

    out_dir: str = "runs/demo"                      # a finished demo (its data/ and teacher/)
    methods: tuple[str, ...] = ("sbs_teacher", "standard_finetune")  # METHOD or METHOD@LOSS_MODE
    fractions: tuple[float, ...] = (0.5, 0.25)      # of the train examples (nested)
    seeds: tuple[int, ...] = (0, 1, 2)
    train_steps: int = 1000
    early_stopping_patience: int = 2
    rows: str = "runs/data_axis/rows.jsonl"

    @property
    def demo(self) -> demo.DemoConfig:
        """The demo's settings the new students share (the demo's defaults otherwise)."""
        return demo.DemoConfig(out_dir=self.out_dir, train_steps=self.train_steps,
                               early_stopping_patience=self.early_stopping_patience)


def find_student(path: str) -> demo.Student:
    """The pretrained student under `path` (default: the only one under runs/pretrained)."""
    if not path:
        found = sorted(glob.glob("runs/pretrained/*/model"))
        if len(found) != 1:
            raise ValueError(f"give --pretrained (runs/pretrained holds {len(found)} students)")
        path = os.path.dirname(found[0])
    spm = os.path.join(path, "spiece.model")
    return demo.Student(os.path.join(path, "model"), pretrained.vocab_rows(spm), spm)


def done_cells(rows_path: str) -> set[tuple]:
    if not os.path.isfile(rows_path):
        return set()
    with open(rows_path, encoding="utf-8") as f:
        return {(r["method"], r["fraction"], r["seed"]) for r in map(json.loads, f)}


def train_cell(axes: AxesConfig, method_mode: str, fraction: float, seed: int, student: demo.Student,
               bindings: tuple[str, ...]) -> dict:
    method, _, loss_mode = method_mode.partition("@")
    spec = demo.student_spec(axes.demo, method, seed, student.spm_path, os.path.join(axes.out_dir, "data"),
                             bindings, student)
    model_dir = os.path.join(os.path.dirname(axes.rows), f"{method_mode.replace('@', '_')}_frac{fraction}_seed{seed}")
    spec = dataclasses.replace(spec, fraction=fraction, model_dir=model_dir, loss_mode=loss_mode or spec.loss_mode)
    return {"method": method_mode, "fraction": fraction, "seed": seed, **runner.train_and_score(spec)}


def run_axes(axes: AxesConfig, student: demo.Student, say: Say = say_line) -> None:
    """Trains every (fraction, method, seed) not yet in `axes.rows`, appending a row after each."""
    data = axes.demo.data
    bindings = preparation.register(data, os.path.join(axes.out_dir, "data"), data.store)
    done = done_cells(axes.rows)
    runner.enable_compilation_cache(os.path.join(axes.out_dir, "jax_cache"))
    os.makedirs(os.path.dirname(os.path.abspath(axes.rows)), exist_ok=True)
    for fraction in axes.fractions:
        for method_mode in axes.methods:
            for seed in axes.seeds:
                if (method_mode, fraction, seed) in done:
                    continue
                row = train_cell(axes, method_mode, fraction, seed, student, bindings)
                with open(axes.rows, "a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")
                say(f"{method_mode} {fraction:g} seed {seed}: {row['steps_run']} steps (best {row['best_step']}), "
                    f"validation {100 * row['val_accuracy']:.1f}%, test {100 * row['test_accuracy']:.1f}%")


if __name__ == "__main__":
    # The documented `python -m t5x_sbs.experiments.demo_axes` runs the CLI module by name: the
    # library imports no command-line code (its flags live in t5x_sbs.cli.demo_axes).
    runpy.run_module("t5x_sbs.cli.demo_axes", run_name="__main__", alter_sys=True)

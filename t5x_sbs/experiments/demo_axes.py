"""More students from a finished `t5x-sbs demo`: other data fractions, λ, budgets or loss modes.

Reuses the demo's data, teacher store and pretrained student (`--out_dir`, `--pretrained`), so
the rows are comparable with the demo's own (same test questions, same starting point), and
appends one JSON row per student (with per-question correctness) to `--rows`:

    python -m t5x_sbs.experiments.demo_axes --methods sbs_teacher,standard_finetune \
        --fractions 0.5,0.25 --seeds 0,1,2 --rows runs/data_axis/rows.jsonl
    python -m t5x_sbs.experiments.demo_axes --methods sbs_teacher@shared_encoder --fractions 1 ...
    python -m t5x_sbs.experiments.demo_axes --methods sbs_gold --fractions 1 --rationale_weights 0.5,2

`METHOD@LOSS_MODE` trains a method with another loss mode. Rows already in `--rows` are skipped.
`--report` prints the rows' table and paired differences (`experiments.axes_report`).
The flags are `t5x_sbs.cli.demo_axes`'s; this module is the behaviour.
"""
from __future__ import annotations

import dataclasses
import functools
import glob
import json
import os
import runpy

from t5x_sbs.checkpoints import model_files
from t5x_sbs.experiments import demo, pretrained, runner, tables, workers
from t5x_sbs.experiments.preparation import Say, say_line
from t5x_sbs.trainer import configs


@dataclasses.dataclass(frozen=True)
class AxesConfig:
    """Which students to add to a finished demo, and where their rows go."""

    out_dir: str = "runs/demo"                      # a finished demo (its data/ and teacher/)
    methods: tuple[str, ...] = ("sbs_teacher", "standard_finetune")  # METHOD or METHOD@LOSS_MODE
    fractions: tuple[float, ...] = (0.5, 0.25)      # of the train examples (nested)
    seeds: tuple[int, ...] = (0, 1, 2)
    rationale_weights: tuple[float, ...] = (demo.DemoConfig.rationale_weight,)  # λ (standard methods: ignored)
    train_steps: int = demo.DemoConfig.train_steps
    early_stopping_patience: int = demo.DemoConfig.early_stopping_patience
    rows: str = "runs/data_axis/rows.jsonl"
    jobs: int = demo.DemoConfig.jobs              # students at a time (0: workers.default_jobs())
    model_gin: str = demo.DemoConfig.model_gin    # the demo's student (its pretrained checkpoint's shapes)
    length_bucket_window: int = demo.DemoConfig.length_bucket_window  # > 0: length-bucketed batches
    sbs_loss_mode: str = demo.DemoConfig.sbs_loss_mode  # of a bare step-by-step METHOD (METHOD@MODE: MODE)
    learning_rate: float = demo.DemoConfig.learning_rate  # peak (Adafactor, warmup then constant)
    dropout_rate: float | None = demo.DemoConfig.dropout_rate  # the students'; None: model_gin's

    def demo(self, rationale_weight: float = demo.DemoConfig.rationale_weight) -> demo.DemoConfig:
        """The demo's settings the new students share (the demo's defaults otherwise)."""
        return demo.DemoConfig(out_dir=self.out_dir, train_steps=self.train_steps, rationale_weight=rationale_weight,
                               early_stopping_patience=self.early_stopping_patience, model_gin=self.model_gin,
                               length_bucket_window=self.length_bucket_window, sbs_loss_mode=self.sbs_loss_mode,
                               learning_rate=self.learning_rate, dropout_rate=self.dropout_rate)

    def effective_dropout(self) -> float:
        return gin_dropout(self.model_gin) if self.dropout_rate is None else self.dropout_rate

    def cells(self) -> list[tuple[str, float, float, int]]:
        """(method, fraction, λ, seed) of every student asked for; a standard method once per
        (fraction, seed), with λ 0 (it has no rationale loss; the demo's rows say 0 too)."""
        out = []
        for fraction in self.fractions:
            for method_mode in self.methods:
                weights = (0.0,) if is_standard(method_mode) else self.rationale_weights
                out += [(method_mode, fraction, weight, seed) for weight in weights for seed in self.seeds]
        return out


SHAPE_FIELDS = ("d_model", "d_kv", "d_ff", "num_heads", "num_encoder_layers", "num_decoder_layers")


def is_standard(method_mode: str) -> bool:
    return tables.METHODS[method_mode.partition("@")[0]][0] == "standard"


def find_student(path: str, model_gin: str = demo.DemoConfig.model_gin) -> demo.Student:
    """The pretrained student under `path` (default: the only one under runs/pretrained), which
    must have the shapes `model_gin` builds."""
    if not path:
        found = sorted(glob.glob("runs/pretrained/*/model"))
        if len(found) != 1:
            raise ValueError(f"give --pretrained (runs/pretrained holds {len(found)} students)")
        path = os.path.dirname(found[0])
    spm, model_dir = os.path.join(path, "spiece.model"), os.path.join(path, "model")
    kept, built = model_files.load_model_config(model_dir), configs.model_config_from_gin([model_gin], [])
    differ = [f"{f} {getattr(kept, f)} vs {getattr(built, f)}" for f in SHAPE_FIELDS
              if getattr(kept, f) != getattr(built, f)]
    if differ:
        raise ValueError(f"the pretrained student {model_dir} is not the model of --model_gin {model_gin}: "
                         f"{', '.join(differ)}")
    return demo.Student(model_dir, pretrained.vocab_rows(spm), spm)


def read_rows(rows_path: str) -> list[dict]:
    if not os.path.isfile(rows_path):
        return []
    with open(rows_path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def cell_of(row: dict) -> tuple[str, float, float, int]:
    # rows written before the λ axis were trained at the demo's λ
    default = 0.0 if is_standard(row["method"]) else demo.DemoConfig.rationale_weight
    return row["method"], row["fraction"], row.get("rationale_weight", default), row["seed"]


def recorded_learning_rate(row: dict) -> float:
    """Rows written before the field was recorded were trained at the demo's learning rate."""
    return row.get("learning_rate", demo.DemoConfig.learning_rate)


def gin_dropout(model_gin: str) -> float:
    """The model gin's dropout: what rows written before `dropout_rate` was recorded trained at."""
    return configs.model_config_from_gin([model_gin], []).dropout_rate


def recorded_layout(row: dict) -> tuple[int, str]:
    """(length_bucket_window, loss_mode) a result row was trained with; rows written before these
    were recorded trained on packed rows (window 0) and step-by-step as two rows (mixture)."""
    return row.get("length_bucket_window", 0), row.get("loss_mode", "mixture")


def same_budget(rows: list[dict], axes: AxesConfig) -> list[dict]:
    """`rows`, refused (ValueError naming the file and line) when one was trained on another step
    cap, patience, batch layout, learning rate or dropout, or a bare step-by-step METHOD in another loss mode than the
    demo's: its cell would be skipped as done, and mixed with the new ones."""
    wanted = (axes.train_steps, axes.early_stopping_patience, axes.length_bucket_window, axes.learning_rate,
              axes.effective_dropout())
    unrecorded_dropout = gin_dropout(axes.model_gin)  # parsed once, not per row
    for line, row in enumerate(rows, 1):
        window, mode = recorded_layout(row)
        kept = (row.get("train_steps"), row.get("patience"), window, recorded_learning_rate(row),
                row.get("dropout_rate", unrecorded_dropout))
        where = f"{axes.rows}:{line}: {row['method']} seed {row['seed']} was trained with"
        if kept != wanted:
            raise ValueError(f"{where} train_steps {kept[0]}, patience {kept[1]}, length_bucket_window {kept[2]}, "
                             f"learning_rate {kept[3]:g}, dropout_rate {kept[4]:g}, "
                             f"not {', '.join(f'{v:g}' for v in wanted)}: give another --rows")
        if "@" not in row["method"] and not is_standard(row["method"]) and mode != axes.sbs_loss_mode:
            raise ValueError(f"{where} loss mode {mode}, not {axes.sbs_loss_mode} (--sbs_loss_mode): give "
                             f"--sbs_loss_mode {mode}, or another --rows")
    return rows


def cell_dir(rows_path: str, method_mode: str, fraction: float, rationale_weight: float, seed: int) -> str:
    # the demo's λ (and any standard method) keeps the folder names rows before the λ axis used
    plain = is_standard(method_mode) or rationale_weight == demo.DemoConfig.rationale_weight
    weight = "" if plain else f"_lambda{rationale_weight:g}"
    return os.path.join(os.path.dirname(rows_path), f"{method_mode.replace('@', '_')}_frac{fraction}{weight}_seed{seed}")


def train_cell(axes: AxesConfig, student: demo.Student, cell: tuple[str, float, float, int]) -> dict:
    """One student, in this process or a fresh worker (which registers the demo's tasks first)."""
    method_mode, fraction, rationale_weight, seed = cell
    method, _, loss_mode = method_mode.partition("@")
    config, data_dir = axes.demo(rationale_weight), os.path.join(axes.out_dir, "data")
    bindings = demo.student_bindings(config, data_dir, config.data.store)
    spec = demo.student_spec(config, method, seed, student.spm_path, data_dir, bindings, student)
    spec = dataclasses.replace(spec, fraction=fraction, model_dir=cell_dir(axes.rows, *cell),
                               loss_mode=loss_mode or spec.loss_mode)
    with workers.student_log(os.path.join(spec.model_dir, "train.log")):
        scores = runner.train_and_score(spec)
    return {"method": method_mode, "fraction": fraction, "rationale_weight": rationale_weight, "seed": seed,
            "size": demo.size_name(axes.model_gin), "jobs": axes.jobs, **scores}


def run_axes(axes: AxesConfig, student: demo.Student, say: Say = say_line) -> None:
    """Trains every (method, fraction, λ, seed) not yet in `axes.rows`, `axes.jobs` at a time,
    appending a row as each finishes."""
    done = {cell_of(row) for row in same_budget(read_rows(axes.rows), axes)}
    os.makedirs(os.path.dirname(os.path.abspath(axes.rows)), exist_ok=True)
    todo = [cell for cell in axes.cells() if cell not in done]
    axes = dataclasses.replace(axes, jobs=axes.jobs or workers.default_jobs())
    train = functools.partial(train_cell, axes, student)
    for cell, row in workers.run_each(train, todo, axes.jobs):
        with open(axes.rows, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        method_mode, fraction, rationale_weight, seed = cell
        say(f"{method_mode} {fraction:g} λ {rationale_weight:g} seed {seed}: {row['steps_run']} steps "
            f"(best {row['best_step']}), validation {100 * row['val_accuracy']:.1f}%, test {100 * row['test_accuracy']:.1f}%")


if __name__ == "__main__":
    # The documented `python -m t5x_sbs.experiments.demo_axes` runs the CLI module by name: the
    # library imports no command-line code (its flags live in t5x_sbs.cli.demo_axes).
    runpy.run_module("t5x_sbs.cli.demo_axes", run_name="__main__", alter_sys=True)

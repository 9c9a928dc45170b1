"""The paper's grid (`t5x-sbs sweep --config FILE`), resumable, with tables and plots.

method {standard_finetune, standard_distill, sbs_gold, sbs_teacher} x data fraction x model
size x λ x seed; each cell is one trainer run in its own MODEL_DIR under `out_dir`. A cell is
finished when its `result.json` exists: reruns skip it, and an interrupted cell resumes from
its own checkpoints (the trainer's resume). Standard methods have no rationale loss, so they
run once per (fraction, size, seed) whatever the λ list. At the end: results.csv,
results.md (validation-selected test accuracy) and the two figures.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import re
import time
from typing import Any, Callable

from t5x_sbs import gin_paths
from t5x_sbs.experiments import plots, tables
from t5x_sbs.names import LOSS_MODES


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """A grid (JSON file; every key below, unknown keys rejected)."""

    dataset: str                                 # "arith" (built in) or a registered dataset: "svamp", "cqa", ...
    out_dir: str
    sizes: dict[str, str]                        # size name -> model gin file (gin/models/...)
    methods: tuple[str, ...] = tuple(tables.METHODS)
    fractions: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0)
    rationale_weights: tuple[float, ...] = (1.0,)
    seeds: tuple[int, ...] = (0,)
    data_dir: str = ""                           # ../shared/data for paper datasets; arith: generated here if empty
    teacher: str = "scripted:arith"              # arith: scripted:...; paper datasets: replay (PaLM) or a store file
    train_steps: int = 200
    batch_size: int = 16
    eval_every: int = 50
    learning_rate: float = 1e-3
    feature_lengths: dict[str, int] = dataclasses.field(default_factory=lambda: {"inputs": 128, "targets": 64})
    loss_mode: str = "mixture"
    train_size: int = 2000                       # arith: generated train examples (test 500, validation 300)
    eval_size: int = 500
    vocab_size: int = 400                        # SentencePiece trained on the task text when no vocab is given
    spm_path: str = ""                           # a SentencePiece model (pretrained checkpoints bring theirs)
    initial_checkpoints: dict[str, str] = dataclasses.field(default_factory=dict)  # size -> our ckpt or HF dir
    gin_bindings: tuple[str, ...] = ()           # extra KEY=VALUE for every cell

    def model_gin(self, size: str) -> str:
        """The size's gin file: as given (absolute, or from the working directory), else one of the
        shipped files (gin/..., configs/...), as gin includes are found."""
        return gin_paths.find(self.sizes[size]) or gin_paths.shipped(self.sizes[size])

    def __post_init__(self):
        for method in self.methods:
            tables.check_method(method)
        if not self.sizes:
            raise ValueError("sizes: at least one size name -> model gin file")
        if any(not 0 < f <= 1 for f in self.fractions):
            raise ValueError(f"fractions {self.fractions}: each must be in (0, 1]")
        unknown_sizes = set(self.initial_checkpoints) - set(self.sizes)
        if unknown_sizes:
            raise ValueError(f"initial_checkpoints: sizes {sorted(unknown_sizes)} not in sizes")
        if self.loss_mode not in LOSS_MODES:
            raise ValueError(f"loss_mode {self.loss_mode!r}: one of {', '.join(LOSS_MODES)}")


def load_config(path: str) -> SweepConfig:
    """Parses a sweep JSON file; errors name the file and the field."""
    with open(path, encoding="utf-8") as f:
        try:
            raw = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    fields = {f.name: f for f in dataclasses.fields(SweepConfig)}
    unknown = set(raw) - set(fields)
    if unknown:
        raise ValueError(f"{path}: unknown field(s) {sorted(unknown)}; known: {sorted(fields)}")
    missing = [n for n, f in fields.items() if n not in raw and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ValueError(f"{path}: missing field(s) {missing}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    try:
        return SweepConfig(**values)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from None


@dataclasses.dataclass(frozen=True)
class Cell:
    method: str
    fraction: float
    size: str
    rationale_weight: float
    seed: int

    @property
    def name(self) -> str:
        return f"{self.method}/frac{self.fraction:g}/{self.size}/lambda{self.rationale_weight:g}/seed{self.seed}"


def grid(config: SweepConfig) -> list[Cell]:
    """All cells in a fixed order; λ applies to step-by-step methods only (standard: λ = 0)."""
    cells = []
    for size, fraction, seed, method in itertools.product(
            config.sizes, sorted(config.fractions), config.seeds, config.methods):
        is_sbs = tables.METHODS[method][0] == "sbs"
        for lam in (config.rationale_weights if is_sbs else (0.0,)):
            cells.append(Cell(method, fraction, size, float(lam), seed))
    return cells


def result_path(config: SweepConfig, cell: Cell) -> str:
    return os.path.join(config.out_dir, "cells", cell.name, "result.json")


# Grid coordinates and output places: they name a cell or where it lives, not how it trains.
_NOT_SETTINGS = {"out_dir", "sizes", "methods", "fractions", "rationale_weights", "seeds", "initial_checkpoints"}


_GIN_INCLUDE = re.compile(r"^\s*include\s+['\"]([^'\"]+)['\"]", re.M)


def _gin_sha256(path: str) -> str | None:
    """Hash of a gin file's text and, recursively, of the files it includes (found as gin finds
    them, `gin_paths.find`): editing an included model file changes it too."""
    digest, seen, todo = hashlib.sha256(), set(), [path]
    while todo:
        full = gin_paths.find(todo.pop(0))
        if full is None or not os.path.isfile(full):
            return None
        if full in seen:
            continue
        seen.add(full)
        with open(full, encoding="utf-8") as f:
            text = f.read()
        digest.update(text.encode())
        todo += _GIN_INCLUDE.findall(text)
    return digest.hexdigest()[:16]


def cell_settings(config: SweepConfig, cell: Cell) -> dict[str, Any]:
    """What a cell's result depends on beyond its coordinates. Stored in result.json, so that
    a rerun after a settings change refuses the stale result instead of reusing it."""
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in _NOT_SETTINGS}
    gin_file = config.sizes[cell.size]
    settings.update(model_gin=gin_file, model_gin_sha256=_gin_sha256(config.model_gin(cell.size)),
                    initial_checkpoint=config.initial_checkpoints.get(cell.size, ""))
    return json.loads(json.dumps(settings))  # tuples -> lists, as read back from result.json


def _read_result(config: SweepConfig, cell: Cell) -> dict | None:
    """A finished cell's row; None if unfinished. Raises if it was trained with other settings
    (results written before settings were recorded carry none and are taken as they are)."""
    path = result_path(config, cell)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        row = json.load(f)
    recorded, wanted = row.get("settings"), cell_settings(config, cell)
    if recorded is not None and recorded != wanted:
        changed = sorted(k for k in set(recorded) | set(wanted) if recorded.get(k) != wanted.get(k))
        raise ValueError(
            f"{path}: cell {cell.name} finished with other settings: "
            + ", ".join(f"{k} {recorded.get(k)!r} -> {wanted.get(k)!r}" for k in changed)
            + "; give the sweep a new out_dir (or delete that cell's folder to retrain it)")
    return row


def load_results(config: SweepConfig) -> list[dict]:
    rows = [_read_result(config, cell) for cell in grid(config)]
    return [row for row in rows if row is not None]


def _write_json_atomically(path: str, obj: Any) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
    os.replace(tmp, path)  # a killed sweep never leaves a half-written result


# A cell runner trains one cell and returns at least val_accuracy, test_accuracy, best_step.
CellRunner = Callable[[SweepConfig, Cell, str], dict]


def run_grid(config: SweepConfig, run_cell: CellRunner, log=print) -> dict[str, int]:
    """Runs every unfinished cell; returns counts of run and skipped cells."""
    counts = {"run": 0, "skipped": 0}
    cells = grid(config)
    for i, cell in enumerate(cells, start=1):
        path = result_path(config, cell)
        if _read_result(config, cell) is not None:
            counts["skipped"] += 1
            log(f"[{i}/{len(cells)}] {cell.name}: done before, skipped")
            continue
        start = time.time()
        outcome = run_cell(config, cell, os.path.dirname(path))
        row = {"dataset": config.dataset, **dataclasses.asdict(cell), "train_steps": config.train_steps,
               **outcome, "wall_s": round(time.time() - start, 1), "settings": cell_settings(config, cell)}
        _write_json_atomically(path, row)
        counts["run"] += 1
        log(f"[{i}/{len(cells)}] {cell.name}: val {row['val_accuracy']:.3f} test {row['test_accuracy']:.3f} "
            f"({row['wall_s']:.0f} s)")
    return counts


def write_reports(config: SweepConfig, size_params: dict[str, int] | None = None) -> dict[str, str]:
    """results.csv, results.md and the figures from every finished cell."""
    rows = load_results(config)
    out = {"csv": os.path.join(config.out_dir, "results.csv"), "md": os.path.join(config.out_dir, "results.md")}
    tables.write_csv(rows, out["csv"])
    sizes = list(config.sizes)
    md = tables.markdown_table(rows, size_order=sizes)
    if len({r["size"] for r in rows}) > 1:  # Figs 6-7 as a table: sizes across, at the largest fraction
        full = [r for r in rows if r["fraction"] == max(config.fractions)]
        md += "\n\n" + tables.markdown_table(full, column="size", size_order=sizes)
    with open(out["md"], "w", encoding="utf-8") as f:
        f.write(md + "\n")
    if rows:
        out["fig_data"] = plots.plot_accuracy_vs_data(rows, os.path.join(config.out_dir, "accuracy_vs_data.png"))
        out["fig_size"] = plots.plot_accuracy_vs_size(rows, os.path.join(config.out_dir, "accuracy_vs_size.png"),
                                                      list(config.sizes), size_params)
    return out


def cell_states(config: SweepConfig) -> list[tuple[str, Cell]]:
    """Each cell's state: 'done', 'todo', or 'stale (why)' (finished with other settings)."""
    states = []
    for cell in grid(config):
        try:
            state = "done" if _read_result(config, cell) is not None else "todo"
        except ValueError as e:
            state = f"stale ({e})"
        states.append((state, cell))
    return states

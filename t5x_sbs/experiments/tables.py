"""Result rows of demos and sweeps: the methods, CSV files and Markdown tables.

One row per trained cell (method x data fraction x model size x lambda x seed); tables
average over seeds (mean ± std, n) so a grid with one seed and one with five print alike.
"""
from __future__ import annotations

import csv
import dataclasses
import math
import os
from collections import defaultdict
from typing import Iterable, Sequence

from t5x_sbs.experiments.stats import mean_ci

# method -> (mixture method, label source), see names.mixture_name; the paper's four arms.
METHODS = {
    "standard_finetune": ("standard", "gold"),
    "standard_distill": ("standard", "llm"),
    "sbs_gold": ("sbs", "gold"),
    "sbs_teacher": ("sbs", "llm"),
}
METHOD_TITLES = {
    "standard_finetune": "Standard finetuning (gold labels)",
    "standard_distill": "Standard distillation (teacher labels)",
    "sbs_gold": "Distilling step-by-step (gold labels + teacher rationales)",
    "sbs_teacher": "Distilling step-by-step (teacher labels + rationales)",
}
FIELDS = ("dataset", "method", "fraction", "size", "rationale_weight", "seed",
          "val_accuracy", "test_accuracy", "best_step", "train_steps", "steps_run", "train_examples", "wall_s")
_NUMERIC = {"fraction": float, "rationale_weight": float, "seed": int, "val_accuracy": float,
            "test_accuracy": float, "best_step": int, "train_steps": int, "steps_run": int, "train_examples": int,
            "wall_s": float}


def check_method(method: str) -> tuple[str, str]:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {list(METHODS)}")
    return METHODS[method]


def write_csv(rows: Iterable[dict], path: str | os.PathLike) -> None:
    """All FIELDS in a fixed order; missing values are empty cells."""
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in FIELDS})


def read_csv(path: str | os.PathLike) -> list[dict]:
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for line_no, row in enumerate(csv.DictReader(f), start=2):
            for key, kind in _NUMERIC.items():
                value = row.get(key)
                try:
                    row[key] = kind(value) if value not in (None, "") else None
                except ValueError:
                    raise ValueError(f"{path}:{line_no}: field {key!r}: {value!r} is not {kind.__name__}") from None
            rows.append(row)
    return rows


@dataclasses.dataclass(frozen=True)
class Summary:
    mean: float
    std: float
    n: int

    def __str__(self) -> str:
        text = f"{100 * self.mean:.1f}"
        return text + (f" ± {100 * self.std:.1f}" if self.n > 1 else "")


def summarize(rows: Iterable[dict], keys: Sequence[str], value: str = "test_accuracy") -> dict[tuple, Summary]:
    """Mean, sample std and count of `value` per distinct tuple of `keys` (seeds pooled)."""
    groups: dict[tuple, list[float]] = defaultdict(list)
    for row in rows:
        if row.get(value) is not None:
            groups[tuple(row[k] for k in keys)].append(float(row[value]))
    out = {}
    for key, values in groups.items():
        mean = sum(values) / len(values)
        var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
        out[key] = Summary(mean, math.sqrt(var), len(values))
    return out


def _method_order(methods: Iterable[str]) -> list[str]:
    """The paper's order first, then any others alphabetically."""
    present = set(methods)
    return [m for m in METHODS if m in present] + sorted(present - set(METHODS))


def markdown_table(rows: Sequence[dict], column: str = "fraction", value: str = "test_accuracy",
                   size_order: Sequence[str] = ()) -> str:
    """Markdown tables, methods down and `column` values across: per (dataset, size, λ) with data
    fractions across (Figs 4-5), or per (dataset, fraction, λ) with model sizes across
    (`column="size"`, Figs 6-7). Sizes follow `size_order` (the sweep's), then by name.

    Cells are accuracy in % (mean ± std over seeds). Standard methods have no rationale
    loss, so they are listed under every λ of the same block."""
    if column not in ("fraction", "size"):
        raise ValueError(f"column {column!r}: fraction or size")
    block_key = "size" if column == "fraction" else "fraction"
    rank = {s: i for i, s in enumerate(size_order)}
    order = {"fraction": float, "size": lambda s: (rank.get(s, len(rank)), str(s))}
    blocks = []
    for dataset in sorted({r["dataset"] for r in rows}):
        values = {r[block_key] for r in rows if r["dataset"] == dataset}
        for block in sorted(values, key=order[block_key]):
            scoped = [r for r in rows if (r["dataset"], r[block_key]) == (dataset, block)]
            blocks += _lambda_blocks(scoped, column, value, _block_title(dataset, block_key, block), order[column])
    note = f"\n\n{value.replace('_', ' ')} in % (mean ± std over seeds; test accuracy is taken at the validation-selected checkpoint)."
    return "\n\n".join(blocks) + note


def _block_title(dataset: str, key: str, value) -> str:
    return f"**{dataset}**, " + (f"model `{value}`" if key == "size" else f"{100 * float(value):g}% of the training data")


def _lambda_blocks(scoped: Sequence[dict], column: str, value: str, title: str, column_key) -> list[str]:
    blocks = []
    lambdas = sorted({r["rationale_weight"] for r in scoped if METHODS.get(r["method"], ("sbs",))[0] == "sbs"}) or [None]
    for lam in lambdas:
        chosen = [r for r in scoped if lam is None or r["method"] not in METHODS
                  or METHODS[r["method"]][0] == "standard" or r["rationale_weight"] == lam]
        stats = summarize(chosen, ("method", column), value)
        columns = sorted({c for _, c in stats}, key=column_key)
        header = "| method | " + " | ".join(_format_column(column, c) for c in columns) + " |"
        lines = [title + (f", λ = {lam:g}" if lam is not None else ""), "", header, "|---|" + "---:|" * len(columns)]
        for method in _method_order(m for m, _ in stats):
            cells = [str(stats[(method, c)]) if (method, c) in stats else "–" for c in columns]
            lines.append(f"| {METHOD_TITLES.get(method, method)} | " + " | ".join(cells) + " |")
        blocks.append("\n".join(lines))
    return blocks


def ci_table(rows: Sequence[dict]) -> str:
    """The demo's table: per method, test and validation accuracy as mean ± 95 % CI half-width
    over seeds (Student t), the seeds, and the steps run / best (validation-selected) step."""
    lines = ["| method | test accuracy % | validation accuracy % | seeds | steps run (mean) | best step (mean) |",
             "|---|---:|---:|---:|---:|---:|"]
    for method in _method_order(r["method"] for r in rows):
        chosen = [r for r in rows if r["method"] == method]
        test, val = mean_ci([r["test_accuracy"] for r in chosen]), mean_ci([r["val_accuracy"] for r in chosen])
        steps = sum(r.get("steps_run") or r.get("train_steps") or 0 for r in chosen) / len(chosen)
        best = sum(r["best_step"] for r in chosen) / len(chosen)
        lines.append(f"| {METHOD_TITLES.get(method, method)} | {test} | {val} | {len(chosen)} | {steps:.0f} | {best:.0f} |")
    return "\n".join(lines) + ("\n\nmean ± half-width of the 95 % confidence interval over seeds; test accuracy at "
                               "the checkpoint selected by validation accuracy, answered from the label prefix.")


def _format_column(column: str, value) -> str:
    if column == "fraction":
        return f"{100 * float(value):g}% data"
    return str(value)

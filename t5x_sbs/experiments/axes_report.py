"""The table and paired differences of a finished demo plus its `demo_axes` rows.

The demo's own rows (`results.json`, 100 % data) and the added ones (`rows.jsonl`) share the
test questions, so every step-by-step group is paired with the standard method on the *same
labels* (gold: finetuning, teacher: distillation):
- at the same data fraction (the paper's Figs 4-5, point by point);
- at 100 % data, for fractions below it (the paper's "step-by-step on less data matches
  finetuning on all of it");
- against the demo's λ at the same fraction, for every other λ.
Only students trained on the same budget (step cap, early-stopping patience and batch layout:
packed rows or length buckets) are grouped or paired: another budget is another row of the
table; a step-by-step loss mode other than `mixture` is part of the method's name. Nothing here
selects on test: each student's test answers are those of its validation-selected checkpoint,
and groups are compared as trained.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from typing import NamedTuple

import numpy as np

from t5x_sbs.experiments import demo, demo_axes, stats, tables

# step-by-step method -> the standard method trained on the same labels
SAME_LABELS = {"sbs_gold": "standard_finetune", "sbs_teacher": "standard_distill"}


class Group(NamedTuple):
    method: str
    fraction: float
    weight: float   # λ; standard methods have 0
    budget: str     # step cap and early-stopping patience


def budget(row: dict) -> str:
    """Student model, step cap, patience, batch layout, learning rate and dropout: students
    differing in any of these are not pooled (the demo's defaults go unsaid)."""
    window, _ = demo_axes.recorded_layout(row)
    rate, size = demo_axes.recorded_learning_rate(row), row.get("size")
    return ((f"{size}, " if size and size != demo.size_name(demo.DemoConfig.model_gin) else "")
            + f"≤ {row['train_steps']} steps, patience {row['patience']}" + (f", length buckets {window}" if window else "")
            + (f", learning rate {rate:g}" if rate != demo.DemoConfig.learning_rate else "")
            + (f", dropout {row['dropout_rate']:g}" if row.get("dropout_rate") else ""))


def load_rows(demo_dir: str, rows_path: str, model_gin: str = demo.DemoConfig.model_gin) -> list[dict]:
    """The demo's rows and the axes rows, each with method, fraction, rationale_weight, seed and
    size (axes rows written before it was recorded: `model_gin`'s, the --model_gin they ran with)."""
    path = os.path.join(demo_dir, "results.json")
    with open(path, encoding="utf-8") as f:
        rows = json.load(f)["rows"]
    # the demo's rows give standard methods λ 0; cell_of reads the axes rows the same way
    axes_rows = [{**row, "rationale_weight": demo_axes.cell_of(row)[2], "size": row.get("size", demo.size_name(model_gin))}
                 for row in demo_axes.read_rows(rows_path)]
    return [{**row, "method": method_and_mode(row)} for row in rows + axes_rows]


def method_and_mode(row: dict) -> str:
    """A step-by-step row's method with its loss mode (`sbs_gold@shared_encoder`) unless it is the
    two-row `mixture`: one layout a group."""
    method, (_, mode) = row["method"], demo_axes.recorded_layout(row)
    return method if "@" in method or mode == "mixture" else f"{method}@{mode}"


def groups(rows: list[dict]) -> dict[Group, list[dict]]:
    out: dict[Group, list[dict]] = defaultdict(list)
    for row in rows:
        out[Group(row["method"], float(row["fraction"]), float(row["rationale_weight"]), budget(row))].append(row)
    return dict(out)


def table(by_group: dict[Group, list[dict]]) -> str:
    """Methods (λ, budget) down, data fractions across: test accuracy %, mean ± 95 % CI (n seeds)."""
    fractions = sorted({g.fraction for g in by_group}, reverse=True)
    lines = ["| method | λ | budget | " + " | ".join(f"{100 * f:g} % data" for f in fractions) + " |",
             "|---|---:|---|" + "---:|" * len(fractions)]
    kinds = sorted({(g.method, g.weight, g.budget) for g in by_group}, key=lambda k: (k[2], _rank(k[0]), k[1]))
    for method, weight, spent in kinds:
        cells = []
        for fraction in fractions:
            chosen = by_group.get(Group(method, fraction, weight, spent), [])
            interval = stats.mean_ci([r["test_accuracy"] for r in chosen]) if chosen else None
            cells.append(f"{interval} (n={len(chosen)})" if interval else "–")
        title = tables.METHOD_TITLES.get(method, method)
        lines.append(f"| {title} | {f'{weight:g}' if weight else '–'} | {spent} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _rank(method: str) -> int:
    order = list(tables.METHODS)
    return order.index(method) if method in order else len(order)


def comparisons(by_group: dict[Group, list[dict]]) -> list[tuple[str, stats.PairedDifference]]:
    """(what, a − b) for every pair the module docstring lists whose two groups exist."""
    demo_weight = demo.DemoConfig.rationale_weight
    pairs = []
    several_budgets = len({g.budget for g in by_group}) > 1
    for g in sorted(by_group, key=lambda g: (g.budget, _rank(g.method), -g.fraction, g.weight)):
        standard = SAME_LABELS.get(g.method.partition("@")[0])
        if standard is None:
            continue
        name = f"{g.method} {100 * g.fraction:g} % λ {g.weight:g}" + (f" ({g.budget})" if several_budgets else "")
        pairs.append((f"{name} − {standard} {100 * g.fraction:g} %", g, Group(standard, g.fraction, 0.0, g.budget)))
        if g.fraction < 1:
            pairs.append((f"{name} − {standard} 100 %", g, Group(standard, 1.0, 0.0, g.budget)))
        if g.weight != demo_weight:
            pairs.append((f"{name} − λ {demo_weight:g}", g, g._replace(weight=demo_weight)))
    return [(what, paired(by_group[a], by_group[b])) for what, a, b in pairs if a in by_group and b in by_group]


def paired(a: list[dict], b: list[dict]) -> stats.PairedDifference:
    return stats.paired_bootstrap(np.array([r["test_correct"] for r in a]), np.array([r["test_correct"] for r in b]))


def report(demo_dir: str, rows_path: str, model_gin: str = demo.DemoConfig.model_gin) -> str:
    by_group = groups(load_rows(demo_dir, rows_path, model_gin))
    lines = [table(by_group), "", "Paired differences (bootstrap over the test questions, seeds averaged per question):"]
    lines += [f"- {what}: {difference}" for what, difference in comparisons(by_group)]
    return "\n".join(lines)

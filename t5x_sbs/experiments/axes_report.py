"""The table and paired differences of a finished demo plus its `demo_axes` rows.

The demo's own rows (`results.json`, 100 % data) and the added ones (`rows.jsonl`) share the
test questions, so every step-by-step group is paired with the standard method on the *same
labels* (gold: finetuning, teacher: distillation):
- at the same data fraction (the paper's Figs 4-5, point by point);
- at 100 % data, for fractions below it (the paper's "step-by-step on less data matches
  finetuning on all of it");
- against the demo's λ at the same fraction, for every other λ.
Nothing here selects on test: each student's test answers are those of its validation-selected
checkpoint, and groups are compared as trained.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict

import numpy as np

from t5x_sbs.experiments import demo, demo_axes, stats, tables

# step-by-step method -> the standard method trained on the same labels
SAME_LABELS = {"sbs_gold": "standard_finetune", "sbs_teacher": "standard_distill"}
Group = tuple[str, float, float]  # (method, fraction, λ); standard methods have λ 0


def load_rows(demo_dir: str, rows_path: str) -> list[dict]:
    """The demo's rows and the axes rows, each with method, fraction, rationale_weight, seed."""
    path = os.path.join(demo_dir, "results.json")
    with open(path, encoding="utf-8") as f:
        rows = json.load(f)["rows"]
    if os.path.isfile(rows_path):
        rows += [{**row, "rationale_weight": demo_axes.cell_of(row)[2]} for row in demo_axes.read_rows(rows_path)]
    return [{**row, "rationale_weight": 0.0} if demo_axes.is_standard(row["method"]) else row for row in rows]


def groups(rows: list[dict]) -> dict[Group, list[dict]]:
    out: dict[Group, list[dict]] = defaultdict(list)
    for row in rows:
        out[(row["method"], float(row["fraction"]), float(row["rationale_weight"]))].append(row)
    return dict(out)


def table(by_group: dict[Group, list[dict]]) -> str:
    """Methods (and λ) down, data fractions across: test accuracy %, mean ± 95 % CI (n seeds)."""
    fractions = sorted({f for _, f, _ in by_group}, reverse=True)
    lines = ["| method | λ | " + " | ".join(f"{100 * f:g} % data" for f in fractions) + " |",
             "|---|---:|" + "---:|" * len(fractions)]
    for method, weight in sorted({(m, w) for m, _, w in by_group}, key=lambda mw: (_rank(mw[0]), mw[1])):
        cells = []
        for fraction in fractions:
            chosen = by_group.get((method, fraction, weight), [])
            interval = stats.mean_ci([r["test_accuracy"] for r in chosen]) if chosen else None
            cells.append(f"{interval} (n={len(chosen)})" if interval else "–")
        title = tables.METHOD_TITLES.get(method, method)
        lines.append(f"| {title} | {f'{weight:g}' if weight else '–'} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _rank(method: str) -> int:
    order = list(tables.METHODS)
    return order.index(method) if method in order else len(order)


def comparisons(by_group: dict[Group, list[dict]]) -> list[tuple[str, stats.PairedDifference]]:
    """(what, a − b) for every pair the module docstring lists whose two groups exist."""
    demo_weight = demo.DemoConfig.rationale_weight
    pairs = []
    for (method, fraction, weight) in sorted(by_group, key=lambda g: (_rank(g[0]), -g[1], g[2])):
        standard = SAME_LABELS.get(method.partition("@")[0])
        if standard is None:
            continue
        name = f"{method} {100 * fraction:g} % λ {weight:g}"
        pairs.append((f"{name} − {standard} {100 * fraction:g} %", (method, fraction, weight), (standard, fraction, 0.0)))
        if fraction < 1:
            pairs.append((f"{name} − {standard} 100 %", (method, fraction, weight), (standard, 1.0, 0.0)))
        if weight != demo_weight:
            pairs.append((f"{name} − λ {demo_weight:g}", (method, fraction, weight), (method, fraction, demo_weight)))
    return [(what, paired(by_group[a], by_group[b])) for what, a, b in pairs if a in by_group and b in by_group]


def paired(a: list[dict], b: list[dict]) -> stats.PairedDifference:
    return stats.paired_bootstrap(np.array([r["test_correct"] for r in a]), np.array([r["test_correct"] for r in b]))


def report(demo_dir: str, rows_path: str) -> str:
    by_group = groups(load_rows(demo_dir, rows_path))
    lines = [table(by_group), "", "Paired differences (bootstrap over the test questions, seeds averaged per question):"]
    lines += [f"- {what}: {difference}" for what, difference in comparisons(by_group)]
    return "\n".join(lines)

"""Plots in the style of the paper: accuracy vs % of training data (Figs 4-5), accuracy vs
model size (Figs 6-7), and the demo's bar chart. matplotlib with the Agg backend (no display)."""
from __future__ import annotations

import os
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from t5x_sbs.experiments.tables import METHOD_TITLES, _method_order, summarize  # noqa: E402

_STYLE = {"standard_finetune": ("tab:gray", "o"), "standard_distill": ("tab:blue", "s"),
          "sbs_gold": ("tab:orange", "^"), "sbs_teacher": ("tab:red", "D")}


def _save(fig, path: str) -> str:
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _lines(ax, rows: Sequence[dict], x_key: str, x_of=lambda v: v):
    stats = summarize(rows, ("method", x_key))
    for method in _method_order({m for m, _ in stats}):
        xs = sorted((x for m, x in stats if m == method), key=x_of)  # by position: 'd128' < 'd32' as text
        means = [100 * stats[(method, x)].mean for x in xs]
        stds = [100 * stats[(method, x)].std for x in xs]
        color, marker = _STYLE.get(method, (None, "x"))
        ax.errorbar([x_of(x) for x in xs], means, yerr=stds, color=color, marker=marker,
                    capsize=3, label=METHOD_TITLES.get(method, method))
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)


def _best_lambda_rows(rows: Sequence[dict]) -> list[dict]:
    """Step-by-step rows at the λ with the best mean validation accuracy (per method); standard
    methods unchanged — so one line per method, as in the paper."""
    out = [r for r in rows if not r["method"].startswith("sbs")]
    for method in {r["method"] for r in rows if r["method"].startswith("sbs")}:
        mine = [r for r in rows if r["method"] == method]
        by_lambda = summarize(mine, ("rationale_weight",), "val_accuracy")
        best = max(by_lambda, key=lambda k: by_lambda[k].mean)[0] if by_lambda else None
        out += [r for r in mine if r["rationale_weight"] == best]
    return out


def plot_accuracy_vs_data(rows: Sequence[dict], path: str) -> str:
    """Figs 4-5: one panel per (dataset, model size); x = % of the training set."""
    panels = sorted({(r["dataset"], r["size"]) for r in rows})
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (dataset, size) in zip(axes[0], panels):
        scoped = _best_lambda_rows([r for r in rows if (r["dataset"], r["size"]) == (dataset, size)])
        _lines(ax, scoped, "fraction", lambda f: 100 * float(f))
        ax.set_xscale("log", base=2)
        percents = sorted({100 * float(r["fraction"]) for r in scoped})
        ax.set_xticks(percents, [f"{p:g}" for p in percents])  # 12.5 25 50 100, not powers of 2
        ax.minorticks_off()
        ax.set_xlabel("% of training data")
        ax.set_title(f"{dataset} ({size})")
    axes[0][0].legend(fontsize=7)
    return _save(fig, path)


def plot_accuracy_vs_size(rows: Sequence[dict], path: str, size_order: Sequence[str],
                          size_params: dict[str, int] | None = None) -> str:
    """Figs 6-7: full training data, one panel per dataset; x = model size (parameters if known)."""
    full = [r for r in rows if float(r["fraction"]) == max(float(x["fraction"]) for x in rows)]
    datasets = sorted({r["dataset"] for r in full})
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
    position = {s: i for i, s in enumerate(size_order)}
    for ax, dataset in zip(axes[0], datasets):
        scoped = _best_lambda_rows([r for r in full if r["dataset"] == dataset])
        if size_params:
            _lines(ax, scoped, "size", lambda s: size_params[s])
            ax.set_xscale("log")
            ax.set_xticks([size_params[s] for s in size_order], [f"{s}\n{_count(size_params[s])}" for s in size_order])
            ax.minorticks_off()
            ax.set_xlabel("model size (parameters)")
        else:
            _lines(ax, scoped, "size", lambda s: position[s])
            ax.set_xticks(range(len(size_order)), size_order)
            ax.set_xlabel("model size")
        ax.set_title(dataset)
    axes[0][0].legend(fontsize=7)
    return _save(fig, path)


def _count(n: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(n)


def plot_methods_bar(rows: Sequence[dict], path: str, title: str = "") -> str:
    """The demo: test accuracy per method (mean over seeds)."""
    stats = summarize(rows, ("method",))
    methods = _method_order(m for (m,) in stats)
    fig, ax = plt.subplots(figsize=(7, 4))
    values = [100 * stats[(m,)].mean for m in methods]
    ax.bar(range(len(methods)), values, color=[_STYLE.get(m, ("tab:green",))[0] for m in methods])
    ax.set_xticks(range(len(methods)), [METHOD_TITLES.get(m, m).replace(" (", "\n(") for m in methods], fontsize=7)
    for i, v in enumerate(values):
        ax.text(i, v, f"{v:.1f}", ha="center", va="bottom")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    return _save(fig, path)

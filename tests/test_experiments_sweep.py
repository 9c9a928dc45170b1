"""Sweep bookkeeping (grid, resume, CSV/Markdown, figures) and every sweep config parses."""
import argparse
import dataclasses
import glob
import json
import os

import pytest

from t5x_sbs.cli import sweep as sweep_cli
from t5x_sbs.experiments import plots, sweep, tables

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(tmp_path, **overrides):
    values = dict(dataset="arith", out_dir=str(tmp_path / "sweep"), sizes={"a": "x.gin", "b": "y.gin"},
                  fractions=(0.25, 1.0), rationale_weights=(0.5, 1.0), seeds=(0, 1))
    values.update(overrides)
    return sweep.SweepConfig(**values)


def _fake_runner(calls):
    """Accuracy depends on the cell so tables and plots have something to order."""
    def run_cell(config, cell, cell_dir):
        calls.append(cell)
        bonus = {"standard_finetune": 0.0, "standard_distill": -0.05, "sbs_gold": 0.1, "sbs_teacher": 0.05}
        acc = 0.3 + 0.4 * cell.fraction + bonus[cell.method] + 0.01 * cell.seed + 0.02 * (cell.size == "b")
        return {"val_accuracy": acc + 0.01, "test_accuracy": acc, "best_step": 10, "train_examples": 100}
    return run_cell


def test_grid_counts_lambda_only_for_sbs(tmp_path):
    cells = sweep.grid(_config(tmp_path))
    # per (size, fraction, seed): 2 standard methods + 2 sbs methods x 2 λ = 6
    assert len(cells) == 2 * 2 * 2 * 6
    assert len({c.name for c in cells}) == len(cells)
    assert {c.rationale_weight for c in cells if c.method.startswith("standard")} == {0.0}


def test_resume_skips_finished_cells_and_reports(tmp_path):
    config = _config(tmp_path)
    calls = []
    first = sweep.run_grid(config, _fake_runner(calls), log=lambda *_: None)
    assert first == {"run": 48, "skipped": 0} and len(calls) == 48
    # an interrupted sweep: remove two results, leave a stray temp file; only those two rerun
    lost = sweep.grid(config)[5:7]
    for cell in lost:
        os.remove(sweep.result_path(config, cell))
    open(sweep.result_path(config, lost[0]) + ".tmp", "w").write("{torn")
    calls.clear()
    second = sweep.run_grid(config, _fake_runner(calls), log=lambda *_: None)
    assert second == {"run": 2, "skipped": 46} and calls == lost

    paths = sweep.write_reports(config)
    rows = tables.read_csv(paths["csv"])
    assert len(rows) == 48 and rows[0]["test_accuracy"] is not None
    md = open(paths["md"]).read()
    assert "| Distilling step-by-step (gold labels + teacher rationales) | " in md
    assert "25% data" in md and "100% data" in md and "λ = 0.5" in md
    # seeds pooled: sbs_gold, size a, 100%: accuracies 0.8 and 0.81 -> "80.5 ± 0.7"
    assert "80.5 ± 0.7" in md
    # Figs 6-7 as a table: sizes across (the sweep's order) at the largest fraction; size b is +2 points
    size_table = md[md.index("**arith**, 100% of the training data, λ = 1"):]
    assert "| method | a | b |" in size_table
    assert "| Distilling step-by-step (gold labels + teacher rationales) | 80.5 ± 0.7 | 82.5 ± 0.7 |" in size_table
    for key in ("fig_data", "fig_size"):
        with open(paths[key], "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_changed_settings_refuse_stale_cells(tmp_path, capsys):
    base = tmp_path / "base.gin"
    base.write_text("T5Config.num_heads = 4\n")
    gin_file = tmp_path / "a.gin"
    gin_file.write_text(f"include '{base}'\nT5Config.d_model = 32\n")
    config = _config(tmp_path, sizes={"a": str(gin_file)}, fractions=(1.0,), seeds=(0,), rationale_weights=(1.0,))
    calls = []
    assert sweep.run_grid(config, _fake_runner(calls), log=lambda *_: None)["run"] == 4
    # same settings: everything is reused
    assert sweep.run_grid(config, _fake_runner(calls), log=lambda *_: None) == {"run": 0, "skipped": 4}
    longer = sweep.SweepConfig(**{**config.__dict__, "train_steps": config.train_steps * 2})
    with pytest.raises(ValueError, match=r"result.json: cell standard_finetune/frac1/a/lambda0/seed0 finished "
                                         r"with other settings: train_steps 200 -> 400; give the sweep a new out_dir"):
        sweep.run_grid(longer, _fake_runner(calls), log=lambda *_: None)
    # an edited model file is a different model, even under the same path, and so is an edited include
    base.write_text("T5Config.num_heads = 8\n")
    with pytest.raises(ValueError, match=r"model_gin_sha256"):
        sweep.load_results(config)
    base.write_text("T5Config.num_heads = 4\n")
    assert len(sweep.load_results(config)) == 4
    gin_file.write_text(f"include '{base}'\nT5Config.d_model = 64\n")
    with pytest.raises(ValueError, match=r"model_gin_sha256"):
        sweep.load_results(config)
    sweep_cli.run(argparse.Namespace(config=_write_config(tmp_path, config), out_dir=None, dry_run=True))
    assert capsys.readouterr().out.count("stale (") == 4
    assert len(calls) == 4  # nothing was retrained by any of the refusals


def _write_config(tmp_path, config) -> str:
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(dataclasses.asdict(config)))
    return str(path)


def test_summaries_pool_seeds():
    rows = [{"method": "m", "fraction": 1.0, "test_accuracy": v} for v in (0.5, 0.7)]
    (summary,) = tables.summarize(rows, ("method", "fraction")).values()
    assert summary.n == 2 and summary.mean == pytest.approx(0.6) and summary.std == pytest.approx(0.1414, abs=1e-4)


def test_size_lines_follow_model_size_not_name_order():
    import matplotlib.pyplot as plt

    params = {"d32": 1e5, "d64": 3e5, "d128": 1e6}
    rows = [{"method": "sbs_teacher", "size": s, "test_accuracy": a} for s, a in (("d128", .3), ("d32", .1), ("d64", .2))]
    fig, ax = plt.subplots()
    plots._lines(ax, rows, "size", lambda s: params[s])
    line = ax.lines[0]
    assert list(line.get_xdata()) == [1e5, 3e5, 1e6] and list(line.get_ydata()) == pytest.approx([10, 20, 30])
    plt.close(fig)
    for row in rows:
        row.update(dataset="arith", fraction=1.0, rationale_weight=1.0)
    md = tables.markdown_table(rows, column="size", size_order=list(params))
    assert "| method | d32 | d64 | d128 |" in md and "| 10.0 | 20.0 | 30.0 |" in md


def test_demo_bar_plot(tmp_path):
    rows = [{"method": m, "test_accuracy": 0.1 * i} for i, m in enumerate(tables.METHODS)]
    path = plots.plot_methods_bar(rows, str(tmp_path / "bar.png"), "demo")
    assert os.path.getsize(path) > 1000


def test_config_errors_name_file_and_field(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"dataset": "arith", "out_dir": "x", "sizes": {"t": "a.gin"}, "lr": 1}))
    with pytest.raises(ValueError, match=r"bad.json: unknown field\(s\) \['lr'\]"):
        sweep.load_config(str(path))
    path.write_text(json.dumps({"dataset": "arith", "out_dir": "x", "sizes": {"t": "a.gin"}, "methods": ["cot"]}))
    with pytest.raises(ValueError, match=r"bad.json: unknown method 'cot'"):
        sweep.load_config(str(path))
    cell = {"dataset": "arith", "out_dir": "x", "sizes": {"t": "a.gin"}}
    path.write_text(json.dumps({**cell, "loss_mode": "shared_encoder"}))
    assert sweep.load_config(str(path)).loss_mode == "shared_encoder"
    path.write_text(json.dumps({**cell, "loss_mode": "two_pass"}))
    with pytest.raises(ValueError, match=r"bad.json: loss_mode 'two_pass': one of paired, mixture, shared_encoder"):
        sweep.load_config(str(path))
    path.write_text(json.dumps({"dataset": "arith", "sizes": {"t": "a.gin"}}))
    with pytest.raises(ValueError, match=r"missing field\(s\) \['out_dir'\]"):
        sweep.load_config(str(path))
    path.write_text('{"dataset": "arith",\n "out_dir": }')
    with pytest.raises(ValueError, match=r"bad.json:2: invalid JSON"):
        sweep.load_config(str(path))


def test_every_sweep_config_parses_and_names_existing_model_files():
    files = sorted(glob.glob(os.path.join(REPO, "configs", "sweeps", "*.json")))
    assert files, "no sweep configs"
    for path in files:
        config = sweep.load_config(path)
        for size, gin_file in config.sizes.items():
            assert os.path.exists(os.path.join(REPO, gin_file)), f"{path}: size {size}: {gin_file} missing"
        assert sweep.grid(config)

"""`demo_axes` cells and `--report`: which students an axis asks for, and how its rows are paired."""
import argparse
import json

import numpy as np
import pytest

from t5x_sbs.cli import demo_axes as demo_axes_cli
from t5x_sbs.experiments import axes_report, demo, demo_axes, runner, stats
from t5x_sbs.trainer import configs


def test_cells_train_a_standard_method_once_per_fraction_and_seed():
    axes = demo_axes.AxesConfig(methods=("sbs_gold", "standard_finetune"), fractions=(0.5,), seeds=(0, 1),
                                rationale_weights=(0.5, 2.0))
    assert axes.cells() == [("sbs_gold", 0.5, 0.5, 0), ("sbs_gold", 0.5, 0.5, 1), ("sbs_gold", 0.5, 2.0, 0),
                            ("sbs_gold", 0.5, 2.0, 1), ("standard_finetune", 0.5, 0.0, 0),
                            ("standard_finetune", 0.5, 0.0, 1)]
    # the demo's λ keeps the folder names of rows written before the λ axis; other λ get their own
    assert demo_axes.cell_dir("r/rows.jsonl", "sbs_gold", 0.5, 1.0, 0) == "r/sbs_gold_frac0.5_seed0"
    assert demo_axes.cell_dir("r/rows.jsonl", "sbs_gold", 0.5, 0.0, 0) == "r/sbs_gold_frac0.5_lambda0_seed0"
    assert demo_axes.cell_dir("r/rows.jsonl", "standard_finetune", 0.5, 0.0, 0) == "r/standard_finetune_frac0.5_seed0"
    # a row from before the λ axis is the demo's λ (standard methods: 0), so it is not trained again
    assert demo_axes.cell_of({"method": "sbs_gold", "fraction": 0.5, "seed": 1}) == ("sbs_gold", 0.5, 1.0, 1)
    assert demo_axes.cell_of({"method": "standard_finetune", "fraction": 0.5, "seed": 1})[2] == 0.0


def test_a_rows_file_of_another_budget_is_refused_naming_its_line():
    axes = demo_axes.AxesConfig(rows="runs/p4/rows.jsonl", train_steps=3000, early_stopping_patience=4,
                                length_bucket_window=0, sbs_loss_mode="mixture")  # the packed recipe
    same = {"method": "sbs_gold", "seed": 0, "train_steps": 3000, "patience": 4}
    assert demo_axes.same_budget([same], axes) == [same]
    with pytest.raises(ValueError, match=r"runs/p4/rows.jsonl:2: sbs_gold seed 1 was trained with train_steps 2000, "
                                         r"patience 2, length_bucket_window 0, learning_rate 0.005, dropout_rate 0, "
                                         r"not 3000, 4, 0, 0.005, 0: give another --rows"):
        demo_axes.same_budget([same, {**same, "seed": 1, "train_steps": 2000, "patience": 2}], axes)
    # rows of packed batches (no window recorded: written before the option) are not bucketed ones
    bucketed = demo_axes.AxesConfig(rows="runs/b/rows.jsonl", train_steps=3000, early_stopping_patience=4)
    assert bucketed.length_bucket_window == 32  # the demo's default
    shared = {**same, "length_bucket_window": 32, "loss_mode": "shared_encoder"}
    assert demo_axes.same_budget([shared], bucketed) == [shared]
    with pytest.raises(ValueError, match=r"runs/b/rows.jsonl:1: .* length_bucket_window 0, .* not 3000, 4, 32"):
        demo_axes.same_budget([same], bucketed)
    # a bare step-by-step METHOD means --sbs_loss_mode (the demo's: shared encoder): two-row rows are refused
    with pytest.raises(ValueError, match=r"rows.jsonl:1: sbs_gold seed 0 was trained with loss mode mixture, "
                                         r"not shared_encoder \(--sbs_loss_mode\): give --sbs_loss_mode mixture"):
        demo_axes.same_budget([{**shared, "loss_mode": "mixture"}], bucketed)


def test_rows_of_another_learning_rate_are_refused_and_reported_apart():
    slower = demo_axes.AxesConfig(rows="runs/lr/rows.jsonl", train_steps=3000, early_stopping_patience=4,
                                  learning_rate=2e-3)
    at_2e3 = {"method": "sbs_gold", "seed": 0, "train_steps": 3000, "patience": 4, "length_bucket_window": 32,
              "loss_mode": "shared_encoder", "learning_rate": 2e-3}
    assert demo_axes.same_budget([at_2e3], slower) == [at_2e3]
    assert slower.demo().learning_rate == 2e-3  # the students it trains use it
    # a row without the field was trained at the demo's learning rate
    with pytest.raises(ValueError, match=r"rows.jsonl:1: .* learning_rate 0.005, dropout_rate 0, not 3000, 4, 32, 0.002, 0:"):
        demo_axes.same_budget([{k: v for k, v in at_2e3.items() if k != "learning_rate"}], slower)
    assert axes_report.budget(at_2e3).endswith(", learning rate 0.002")
    assert "learning rate" not in axes_report.budget({**at_2e3, "learning_rate": 5e-3})
    assert _parse_lr("3e-3") == 3e-3
    with pytest.raises(SystemExit):
        _parse_lr("0")


def _parse_lr(text):
    return _parse("--learning_rate", text).learning_rate


def _parse(*argv):
    parser = argparse.ArgumentParser()
    demo_axes_cli.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_dropout_is_an_axis_rows_record_it_and_the_students_train_with_it():
    axes = demo_axes.AxesConfig(rows="runs/d/rows.jsonl", dropout_rate=0.1)
    assert axes.effective_dropout() == 0.1 and demo_axes.AxesConfig().effective_dropout() == 0.0  # the gin's
    spec = demo.student_spec(axes.demo(), "sbs_gold", 0, "spm.model", "data", (), demo.Student("", 256, None))
    with configs.gin_scope():  # what the student's trainer gets, after the run's gin overrides
        assert spec.dropout_rate == 0.1 and runner.train_configs(spec).model.dropout_rate == 0.1
    plain = demo.student_spec(demo_axes.AxesConfig().demo(), "sbs_gold", 0, "spm.model", "data", (),
                              demo.Student("", 256, None))
    assert runner.built_configs(plain).model.dropout_rate == 0.0  # configs/demo_student_d64.gin's
    row = {"method": "sbs_gold", "seed": 0, "train_steps": axes.train_steps, "patience": axes.early_stopping_patience,
           "length_bucket_window": 32, "loss_mode": "shared_encoder", "dropout_rate": 0.1}
    assert demo_axes.same_budget([row], axes) == [row]
    with pytest.raises(ValueError, match=r"rows.jsonl:1: .* dropout_rate 0, not .*, 0.1: give another --rows"):
        demo_axes.same_budget([{k: v for k, v in row.items() if k != "dropout_rate"}], axes)  # before the field: 0
    assert axes_report.budget(row).endswith(", dropout 0.1") and "dropout" not in axes_report.budget({**row, "dropout_rate": 0})
    assert _parse("--dropout_rate", "0.1").dropout_rate == 0.1 and _parse().dropout_rate is None
    for bad in ("1", "-0.1", "x"):
        with pytest.raises(SystemExit):
            _parse("--dropout_rate", bad)


def _row(method, seed, correct, fraction=None, weight=None, patience=2):
    row = {"method": method, "seed": seed, "test_correct": correct, "test_accuracy": float(np.mean(correct)),
           "train_steps": 2000, "patience": patience}
    row.update({"fraction": fraction} if fraction is not None else {})
    return row | ({"rationale_weight": weight} if weight is not None else {})


def test_report_pairs_like_labels_across_fractions_and_lambda(tmp_path, capsys):
    rng = np.random.default_rng(0)
    answers = lambda p: rng.random(200) < p  # noqa: E731
    demo_rows = [_row("standard_finetune", s, answers(0.4).tolist(), 1.0, 0.0) for s in range(3)]
    demo_rows += [_row("sbs_gold", s, answers(0.6).tolist(), 1.0, 1.0) for s in range(3)]
    (tmp_path / "results.json").write_text(json.dumps({"rows": demo_rows}))
    axes_rows = [_row("sbs_gold", s, answers(0.5).tolist(), 0.5) for s in range(3)]  # before the λ axis: λ 1
    axes_rows += [_row("sbs_gold", s, answers(0.6).tolist(), 1.0, 2.0) for s in range(2)]
    axes_rows += [_row("sbs_gold", 0, answers(0.7).tolist(), 1.0, 1.0, patience=4)]  # another budget: its own group
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in axes_rows))

    by_group = axes_report.groups(axes_report.load_rows(str(tmp_path), str(tmp_path / "rows.jsonl")))
    two, four = "≤ 2000 steps, patience 2", "≤ 2000 steps, patience 4"
    assert {tuple(g): len(rows) for g, rows in by_group.items()} == {
        ("standard_finetune", 1.0, 0.0, two): 3, ("sbs_gold", 1.0, 1.0, two): 3, ("sbs_gold", 0.5, 1.0, two): 3,
        ("sbs_gold", 1.0, 2.0, two): 2, ("sbs_gold", 1.0, 1.0, four): 1}
    found = dict(axes_report.comparisons(by_group))
    # the patience-4 student has no standard method on its budget: it is in the table, paired with nothing
    assert set(found) == {f"sbs_gold 100 % λ 1 ({two}) − standard_finetune 100 %",
                          f"sbs_gold 50 % λ 1 ({two}) − standard_finetune 100 %",
                          f"sbs_gold 100 % λ 2 ({two}) − standard_finetune 100 %", f"sbs_gold 100 % λ 2 ({two}) − λ 1"}
    half = found[f"sbs_gold 50 % λ 1 ({two}) − standard_finetune 100 %"]
    expected = stats.paired_bootstrap(np.array([r["test_correct"] for r in axes_rows[:3]]),
                                      np.array([r["test_correct"] for r in demo_rows[:3]]))
    assert half == expected and half.seeds == (3, 3) and half.low > 0  # 0.5 vs 0.4 on 200 questions x 3 seeds

    assert demo_axes_cli.main(["--out_dir", str(tmp_path), "--rows", str(tmp_path / "rows.jsonl"), "--report"]) == 0
    printed = capsys.readouterr().out
    assert "| method | λ | budget | 100 % data | 50 % data |" in printed and "(n=2)" in printed
    patience_4 = f"| Distilling step-by-step (gold labels + teacher rationales) | 1 | {four} | "
    assert printed.count(patience_4) == 1 and "(n=1) | – |" in printed.split(patience_4)[1].splitlines()[0]
    assert str(half) in printed


def test_length_bucketed_students_are_not_pooled_with_packed_ones(tmp_path):
    rng = np.random.default_rng(1)
    answers = lambda p: (rng.random(100) < p).tolist()  # noqa: E731
    packed = [_row("standard_finetune", s, answers(0.4), 1.0, 0.0) for s in range(3)]
    (tmp_path / "results.json").write_text(json.dumps({"rows": packed}))
    bucketed = [{**_row(m, s, answers(0.5), 1.0), "length_bucket_window": 32}
                for m in ("standard_finetune", "sbs_gold@shared_encoder") for s in range(2)]
    bucketed += [{**_row("sbs_gold", 2, answers(0.5), 1.0), "length_bucket_window": 32, "loss_mode": "shared_encoder"}]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in bucketed))
    by_group = axes_report.groups(axes_report.load_rows(str(tmp_path), str(tmp_path / "rows.jsonl")))
    packed_budget, bucket_budget = "≤ 2000 steps, patience 2", "≤ 2000 steps, patience 2, length buckets 32"
    assert {tuple(g): len(rows) for g, rows in by_group.items()} == {
        ("standard_finetune", 1.0, 0.0, packed_budget): 3, ("standard_finetune", 1.0, 0.0, bucket_budget): 2,
        ("sbs_gold@shared_encoder", 1.0, 1.0, bucket_budget): 3}  # a bare METHOD row names its loss mode
    # the bucketed step-by-step students are paired with the bucketed finetuning ones only
    (what, difference), = axes_report.comparisons(by_group)
    assert what == f"sbs_gold@shared_encoder 100 % λ 1 ({bucket_budget}) − standard_finetune 100 %"
    assert difference == axes_report.paired(bucketed[2:], bucketed[:2])
    assert axes_report.method_and_mode({"method": "sbs_gold"}) == "sbs_gold"  # rows from before: two rows


def test_report_without_the_demo_names_the_missing_file(tmp_path):
    with pytest.raises(SystemExit, match="demo_axes --report: .*results.json"):
        demo_axes_cli.main(["--out_dir", str(tmp_path), "--report"])


def test_students_of_another_model_are_not_pooled_with_the_demos(tmp_path):
    """A d128 rows file beside a d64 demo at the same budget: the rows' --model_gin keeps them apart
    (rows written before `size` was recorded take the --model_gin given to --report)."""
    rng = np.random.default_rng(1)
    demo_rows = [{**_row("standard_finetune", s, (rng.random(50) < 0.7).tolist(), 1.0, 0.0), "size": "demo_student_d64"}
                 for s in range(2)]
    (tmp_path / "results.json").write_text(json.dumps({"rows": demo_rows}))
    wide = [_row(m, s, (rng.random(50) < 0.6).tolist(), 1.0) for m in ("standard_finetune", "sbs_gold") for s in range(2)]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in wide))
    rows = axes_report.load_rows(str(tmp_path), str(tmp_path / "rows.jsonl"), "configs/demo_student.gin")
    by_group = axes_report.groups(rows)
    assert {(g.method, g.budget): len(r) for g, r in by_group.items()} == {
        ("standard_finetune", "≤ 2000 steps, patience 2"): 2,
        ("standard_finetune", "demo_student, ≤ 2000 steps, patience 2"): 2,
        ("sbs_gold", "demo_student, ≤ 2000 steps, patience 2"): 2}
    (what, difference), = axes_report.comparisons(by_group)
    assert what.endswith("(demo_student, ≤ 2000 steps, patience 2) − standard_finetune 100 %")
    assert difference == axes_report.paired(wide[2:], wide[:2])  # d128 against d128 only
    # a row that records its model keeps it whatever --model_gin says
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps({**r, "size": "demo_student"}) + "\n" for r in wide))
    kept = axes_report.load_rows(str(tmp_path), str(tmp_path / "rows.jsonl"))  # --model_gin: the d64 default
    assert [r["size"] for r in kept] == ["demo_student_d64"] * 2 + ["demo_student"] * 4
    assert demo.size_name("configs/demo_student.gin") == "demo_student"

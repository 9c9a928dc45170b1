"""`t5x-sbs demo` rejects bad numbers when its arguments are parsed: one line, exit 2, before any
work (the demo's first act is to create --out_dir, so its absence shows nothing ran)."""
from __future__ import annotations

import dataclasses

import pytest

from t5x_sbs.cli import main

BAD = {
    "zero_steps": (["--train_steps", "0"], "argument --train_steps: must be an integer >= 1, got 0"),
    "negative_steps": (["--train_steps", "-3"], "argument --train_steps: must be an integer >= 1, got -3"),
    "word_steps": (["--train_steps", "many"], "argument --train_steps: must be an integer >= 1, got 'many'"),
    "zero_batch": (["--batch_size", "0"], "argument --batch_size: must be an integer >= 1, got 0"),
    "zero_eval_every": (["--eval_every", "0"], "argument --eval_every: must be an integer >= 1, got 0"),
    "empty_seeds": (["--seeds", ""], "argument --seeds: must be comma-separated integers >= 0, e.g. 0,1,2; got ''"),
    "bad_seeds": (["--seeds", "0,x"], "argument --seeds: must be comma-separated integers >= 0"),
    "repeated_seeds": (["--seeds", "1,1"], "argument --seeds: lists a value twice: '1,1'"),
    "zero_learning_rate": (["--learning_rate", "0"], "argument --learning_rate: must be a finite number > 0, got 0"),
    "nan_weight": (["--rationale_weight", "nan"], "argument --rationale_weight: must be a finite number >= 0"),
    "negative_pretrain": (["--pretrain_steps", "-1"], "argument --pretrain_steps: must be an integer >= 0, got -1"),
    "negative_jobs": (["--jobs", "-1"], "argument --jobs: must be an integer >= 0, got -1"),
    "dropout_of_one": (["--dropout_rate", "1"], "argument --dropout_rate: must be in [0, 1); got '1'"),
    "arith_steps_reversed": (["--arith", "steps=5-3"], "argument --arith: steps 5-3: need 1 <= MIN <= MAX"),
    "arith_unknown_op": (["--arith", "ops=+/"], "argument --arith: ops '+/' (from '+-*')"),
    "arith_unknown_field": (["--arith", "depth=3"], "argument --arith: 'depth=3': expected steps=MIN-MAX"),
    "arith_word_value": (["--arith", "max_value=big"], "argument --arith: 'max_value=big': max_value takes an integer"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_demo_bad_number_fails_when_parsed(tmp_path, capsys, case):
    extra, expected = BAD[case]
    out = tmp_path / "demo"
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--out_dir", str(out), *extra])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("t5x-sbs demo: error: "), err
    assert expected in err, err
    assert not out.exists()


def test_demo_seeds_are_normalised(tmp_path):
    from t5x_sbs.cli import demo
    from t5x_sbs.user_errors import OneLineArgumentParser

    parser = OneLineArgumentParser()
    demo.add_arguments(parser)
    assert parser.parse_args(["--seeds", " 2, 0 ,"]).seeds == "2,0"
    assert parser.parse_args([]).seeds == "0,1,2" and parser.parse_args([]).train_steps == 6000
    assert parser.parse_args([]).early_stopping_patience == 4 and parser.parse_args([]).jobs == 0


def test_demo_length_buckets_reach_the_students_runs(tmp_path):
    from t5x_sbs.cli import demo as demo_cli
    from t5x_sbs.experiments import demo
    from t5x_sbs.user_errors import OneLineArgumentParser

    parser = OneLineArgumentParser()
    demo_cli.add_arguments(parser)
    config = demo_cli.config_from_args(parser.parse_args(["--length_bucket_window", "0"]))
    spec = demo.student_spec(config, "sbs_gold", 0, "spm", str(tmp_path), (), demo.Student("", None, "spm"))
    assert (config.length_bucket_window, spec.length_bucket_window) == (0, 0)
    assert "packed rows" in demo.layout(config)
    default = demo_cli.config_from_args(parser.parse_args([]))
    assert (default.length_bucket_window, default.sbs_loss_mode) == (32, "shared_encoder")
    # --sbs_loss_mode lays out the step-by-step students only; a standard task has one row an example
    config = demo_cli.config_from_args(parser.parse_args(["--sbs_loss_mode", "paired"]))
    modes = {m: demo.student_spec(config, m, 0, "spm", str(tmp_path), (), demo.Student("", None, "spm")).loss_mode
             for m in ("sbs_gold", "sbs_teacher", "standard_finetune", "standard_distill")}
    assert modes == {"sbs_gold": "paired", "sbs_teacher": "paired", "standard_finetune": "mixture",
                     "standard_distill": "mixture"}
    assert "buckets (window 16" in demo.layout(dataclasses.replace(config, length_bucket_window=16))
    # --dropout_rate reaches every student's model (None: the model gin's)
    config = demo_cli.config_from_args(parser.parse_args(["--dropout_rate", "0.1"]))
    assert demo.student_spec(config, "standard_finetune", 0, "spm", str(tmp_path), (),
                             demo.Student("", None, "spm")).dropout_rate == 0.1
    assert demo_cli.config_from_args(parser.parse_args([])).dropout_rate is None


@pytest.mark.parametrize("mode", ["first", "vote", "all"])
def test_demo_samples_mode_reaches_the_tasks(tmp_path, mode):
    """`--samples_mode` (with `--teacher_args '--samples 5'`) becomes the tasks' store reading:
    the demo's DataSettings carry it and `register` binds tasks.config.teacher_reading.samples."""
    import gin

    from t5x_sbs.cli import demo
    from t5x_sbs.experiments import preparation
    from t5x_sbs.tasks import config as task_config
    from t5x_sbs.trainer import configs
    from t5x_sbs.user_errors import OneLineArgumentParser

    parser = OneLineArgumentParser()
    demo.add_arguments(parser)
    args = parser.parse_args(["--out_dir", str(tmp_path), "--samples_mode", mode, "--teacher_args", "--samples 5"])
    config = demo.config_from_args(args)
    assert config.samples_mode == mode and config.teacher_ask.options.samples == 5
    data = dataclasses.replace(config.data, dataset="svamp")  # a gin-bound store: no registration
    bindings = preparation.register(data, str(tmp_path), str(tmp_path / "store.jsonl"))
    assert any("teacher_reading" in b for b in bindings) == (mode != "first")
    try:
        configs.bind_data_edge(list(bindings))
        assert task_config.teacher_reading().samples == mode
    finally:
        gin.clear_config()


def test_demo_samples_mode_rejects_other_values(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--out_dir", str(tmp_path / "demo"), "--samples_mode", "best"])
    assert exit_info.value.code == 2
    assert "argument --samples_mode: invalid choice: 'best'" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()


def test_demo_arith_difficulty_reaches_the_generated_problems(tmp_path):
    """`--arith steps=3-4,ops=+-*,max_value=20`: every generated problem has 3-4 steps, stays in
    0..20 and some multiply; the default is the documented 2-3 steps of + and -."""
    from t5x_sbs.cli import demo
    from t5x_sbs.data import arith
    from t5x_sbs.experiments import preparation
    from t5x_sbs.user_errors import OneLineArgumentParser

    parser = OneLineArgumentParser()
    demo.add_arguments(parser)
    assert demo.config_from_args(parser.parse_args([])).arith_difficulty == arith.Difficulty(2, 3, 12, 5, "+-")
    args = parser.parse_args(["--out_dir", str(tmp_path), "--arith", "steps=3-4,ops=+-*,max_value=20",
                              "--train_size", "200", "--eval_size", "50"])
    data_dir = preparation.prepare_data(demo.config_from_args(args).data, say=lambda _: None)
    problems = list(arith.read_split(f"{data_dir}/train.jsonl"))
    chains = [arith.evaluate(*arith.parse_question(p["question"])) for p in problems]
    assert {len(c) - 1 for c in chains} == {3, 4}
    assert all(0 <= v <= 20 for c in chains for v in c) and max(v for c in chains for v in c) > 12
    assert any(" * " in p["rationale"] for p in problems)

"""Every subcommand turns expected user errors into one line naming file/line/field, exit code 2;
`--debug` shows the traceback instead."""
from __future__ import annotations

import json
import os
import sys

import pytest

from t5x_sbs.cli import main

sys.path.insert(0, os.path.dirname(__file__))
import fake_gemini  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def bad(tmp_path):
    files = {}
    files["dir"] = tmp_path / "a_dir"
    files["dir"].mkdir()
    files["bad_json"] = tmp_path / "bad.json"
    files["bad_json"].write_text('{"models": {"gemini-x": {"input": 1,\n "output": }}}')
    files["bad_prices"] = tmp_path / "prices.json"
    files["bad_prices"].write_text(json.dumps({"models": {"gemini-x": {"input": "cheap", "output": 1}}}))
    files["not_utf8"] = tmp_path / "store.jsonl"
    good = {"id": "x", "input": {}, "rationale": None, "label": None, "status": "failed"}
    files["not_utf8"].write_bytes(json.dumps(good).encode() + b"\n\xff\xfe garbage\n")
    files["safetensors"] = tmp_path / "hf"
    files["safetensors"].mkdir()
    (files["safetensors"] / "config.json").write_text(json.dumps({"d_model": 8}))
    (files["safetensors"] / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":")
    files["truncated"] = _truncated_hf_dir(tmp_path / "hf_truncated", sharded=False)
    files["truncated_shard"] = _truncated_hf_dir(tmp_path / "hf_sharded", sharded=True)
    files["ckpt"] = tmp_path / "model_dir"
    (files["ckpt"] / "3" / "state").mkdir(parents=True)
    fake_gemini.write_cqa_dataset(str(tmp_path / "data"), 3)
    files["data"] = tmp_path / "data"
    files["tmp"] = tmp_path
    return files


def _truncated_hf_dir(directory, sharded: bool):
    """A real safetensors file cut short (a download stopped early), alone or as a listed shard."""
    import numpy as np
    from safetensors.numpy import save_file

    directory.mkdir()
    (directory / "config.json").write_text(json.dumps({"d_model": 8}))
    name = "model-00001-of-00001.safetensors" if sharded else "model.safetensors"
    tensors = {"shared.weight": np.ones((16, 8), np.float32), "lm_head.weight": np.ones((16, 8), np.float32)}
    save_file(tensors, str(directory / name))
    data = (directory / name).read_bytes()
    (directory / name).write_bytes(data[: len(data) - 100])
    if sharded:
        index = {"weight_map": {k: name for k in tensors}}
        (directory / "model.safetensors.index.json").write_text(json.dumps(index))
    return directory


CASES = {
    "ledger_missing": (lambda f: ["ledger", str(f["tmp"] / "nope.jsonl")], "nope.jsonl: no such file"),
    "ledger_directory": (lambda f: ["ledger", str(f["dir"])], "a_dir: not a file"),
    "ledger_not_utf8": (lambda f: ["ledger", str(f["not_utf8"])], "store.jsonl:2: not UTF-8"),
    "ledger_prices_json": (lambda f: ["ledger", str(f["not_utf8"]).replace("store", "none"), "--prices",
                                      str(f["bad_json"])], "bad.json:2: invalid JSON"),
    "data_report_missing_dir": (lambda f: ["data-report", "--data_dir", str(f["tmp"] / "none"), "--dataset", "cqa"],
                                "cqa_test.json: file not found"),
    "data_report_store_dir": (lambda f: ["data-report", "--data_dir", str(f["data"]), "--dataset", "cqa",
                                         "--split", "train", "--teacher_file", str(f["dir"])], "a_dir: not a file"),
    "vocab_missing": (lambda f: ["vocab", "--data_dir", str(f["tmp"] / "none"), "--dataset", "svamp",
                                 "--output", str(f["tmp"] / "v.model")], "svamp_train.json: file not found"),
    "vocab_unknown_dataset": (lambda f: ["vocab", "--data_dir", str(f["data"]), "--dataset", "nosuch",
                                         "--output", str(f["tmp"] / "v.model")], "unknown dataset 'nosuch'"),
    "import_missing": (lambda f: ["import-rationales", "--data_dir", str(f["data"]), "--dataset", "svamp",
                                  "--file", str(f["tmp"] / "x.json"), "--output", str(f["tmp"] / "o.jsonl")],
                       "x.json: file not found"),
    "rationales_unknown": (lambda f: ["rationales", "--dataset", "nosuch", "--data_dir", str(f["data"]),
                                      "--teacher", "scripted:arith", "--out", str(f["tmp"] / "o.jsonl")],
                           "unknown dataset 'nosuch'"),
    "convert_bad_safetensors": (lambda f: ["convert", "--from", f"hf:{f['safetensors']}", "--to", "ours",
                                           "--out", str(f["tmp"] / "out")],
                                "hf/model.safetensors: not a readable safetensors file (Error while deserializing header"),
    "convert_truncated_safetensors": (lambda f: ["convert", "--from", f"hf:{f['truncated']}", "--to", "ours",
                                                 "--out", str(f["tmp"] / "out")],
                                      "hf_truncated/model.safetensors: not a readable safetensors file"),
    "convert_truncated_shard": (lambda f: ["convert", "--from", f"hf:{f['truncated_shard']}", "--to", "ours",
                                           "--out", str(f["tmp"] / "out")],
                                "hf_sharded/model-00001-of-00001.safetensors: not a readable safetensors file"),
    "convert_bad_checkpoint": (lambda f: ["convert", "--from", str(f["ckpt"]), "--to", "hf",
                                          "--out", str(f["tmp"] / "out"), "--no-tokenizer"], "model_dir"),
    "sweep_bad_json": (lambda f: ["sweep", "--config", str(f["bad_json"])], "bad.json"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_subcommand_bad_input_is_one_line_exit_2(bad, capsys, case):
    argv, expected = CASES[case]
    assert main(argv(bad)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert expected in err, err


def test_bad_price_table_names_the_field(bad, capsys):
    store = bad["tmp"] / "ok.jsonl"
    store.write_text("")
    assert main(["ledger", str(store), "--prices", str(bad["bad_json"])]) == 2
    assert "bad.json:2: invalid JSON" in capsys.readouterr().err
    assert main(["ledger", str(store), "--prices", str(bad["bad_prices"])]) == 2
    assert "prices.json: field 'models.gemini-x.input': must be a number" in capsys.readouterr().err


def test_debug_shows_the_traceback(bad):
    with pytest.raises(Exception, match="no such file"):
        main(["ledger", str(bad["tmp"] / "nope.jsonl"), "--debug"])


TRAIN = ["train", "--gin_file=gin/runs/sbs.gin", f"--gin.MODEL_DIR='{{tmp}}/m'",
         "--gin.MIXTURE_OR_TASK_NAME='svamp_sbs_llm'"]
TRAIN_CASES = {
    "misspelled_macro": (["--gin.TRAIN_STEPZ=5"], "macro TRAIN_STEPZ is used by no loaded gin file or configurable; "
                                                  "did you mean TRAIN_STEPS?"),
    "zero_steps": (["--gin.TRAIN_STEPS=0"], "RunConfig.train_steps (gin TRAIN_STEPS) must be an integer >= 1, got 0"),
    "negative_steps": (["--gin.TRAIN_STEPS=-3"], "must be an integer >= 1, got -3"),
    "zero_batch": (["--gin.BATCH_SIZE=0"], "RunConfig.batch_size (gin BATCH_SIZE) must be an integer >= 1, got 0"),
    "bad_binding": (["--gin.NoSuchThing.x=1"], "No configurable matching 'NoSuchThing'"),
    "unclosed": (["--gin.TRAIN_STEPS=(1"], "EOF in multi-line statement"),
    "missing_gin_file": (["--gin_file=gin/runs/nope.gin"], "gin/runs/nope.gin: gin file not found"),
    "alpha_and_lambda": (["--gin.LossConfig.alpha=0.5", "--gin.TRAIN_STEPS=1"],
                         "both rationale_weight (λ = 1.0, gin RATIONALE_WEIGHT) and alpha (α = 0.5)"),
}


@pytest.mark.parametrize("case", sorted(TRAIN_CASES))
def test_train_bad_configuration_is_one_line_before_any_work(tmp_path, capsys, case, monkeypatch):
    import gin

    monkeypatch.chdir(REPO)
    extra, expected = TRAIN_CASES[case]
    gin.clear_config()
    try:
        assert main([a.format(tmp=tmp_path) for a in TRAIN] + extra) == 2
    finally:
        gin.clear_config()
    err = capsys.readouterr().err.strip().splitlines()
    assert err and expected in err[-1], err
    assert not (tmp_path / "m" / "checkpoint").exists() and not any((tmp_path / "m").glob("[0-9]*"))

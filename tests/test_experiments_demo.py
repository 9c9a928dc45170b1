"""CI-sized main job: the demo end to end (teacher -> store -> vocab -> 3 students -> HF export ->
transformers answer -> table/CSV/PNG), and a mini sweep that resumes (finished cells skipped).

Tiny on purpose (few steps, tiny T5): it proves the pipeline runs and is wired to the real parts,
not that the students learn; `make demo` reports real numbers."""
import csv
import json
import logging
import os
import pathlib
import re
import sys
import zlib

import numpy as np
import pytest

from t5x_sbs import checkpoints, cli
from t5x_sbs.cli import demo_axes as demo_axes_cli
from t5x_sbs.experiments import sweep, tables
from t5x_sbs.experiments.demo import DemoConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    monkeypatch.chdir(REPO)  # the demo's default gin paths are relative to the repo


TINY = ["--train_size", "96", "--eval_size", "24", "--train_steps", "4", "--eval_every", "2",
        "--batch_size", "8", "--vocab_size", "200", "--inputs_length", "128", "--targets_length", "32"]


def test_demo_end_to_end(tmp_path, capsys, caplog):
    """Pretrained student (span corruption on the task's text, 4 steps), 2 methods x 2 seeds to
    early stopping (patience 1: a student that does not improve stops before its 6 steps), two
    students at a time in pinned worker processes (`--jobs 2`, each logging to its train.log)."""
    from t5x_sbs.experiments import pretrained

    out, pretrain_dir = tmp_path / "demo", tmp_path / "pretrained"
    caplog.set_level(logging.INFO, logger="t5x_sbs.trainer.train_loop")
    argv = ["demo", "--out_dir", str(out), *TINY, "--train_steps", "6", "--seeds", "0,1", "--pretrain_steps", "4",
            "--pretrain_corpus", "task", "--pretrain_dir", str(pretrain_dir), "--early_stopping_patience", "1",
            "--methods", "standard_finetune,sbs_teacher", "--jobs", "2"]  # standard_distill: the svamp test below
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    for step in ("[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"):
        assert step in printed
    # the teacher went through store + ledger, on every split, with ~20% wrong labels
    ledger = json.loads((out / "teacher" / "ledger.json").read_text())
    assert ledger["records"] == 96 + 24 + 14 and ledger["statuses"] == {"ok": 134}
    assert 0.6 <= ledger["label_accuracy"] <= 0.95
    # one pretrained student (its own MODEL_DIR and vocabulary); every student started from it
    (home,) = pretrain_dir.iterdir()
    assert (home / "spiece.model").is_file() and 4 in checkpoints.complete_steps(home / "model")
    assert "2 at a time" in printed
    logs = list((out / "models").glob("*/train.log"))  # the workers' students log there, not here
    assert len(logs) == 4 and all(f"initialised from {home / 'model'}" in p.read_text() for p in logs)
    assert not [r for r in caplog.records if r.getMessage().startswith("initialised from")]
    # two methods x two seeds, each trained by the trainer and scored at its validation-selected step
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["method"], r["seed"]) for r in rows] == [(m, s) for m in ("standard_finetune", "sbs_teacher")
                                                        for s in ("0", "1")]
    for row in rows:
        assert 0.0 <= float(row["test_accuracy"]) <= 1.0 and int(row["best_step"]) <= int(row["steps_run"]) <= 6
        results = json.loads((out / "models" / f"{row['method']}_seed{row['seed']}" / "test_results.json").read_text())
        assert results["test"]["accuracy"] == pytest.approx(float(row["test_accuracy"]))
    assert any(int(r["steps_run"]) < 6 for r in rows)  # early stopping ended some run
    summary = json.loads((out / "results.json").read_text())
    for row in summary["rows"]:  # per-question correctness of the test split, matching the accuracy
        assert row["jobs"] == 2 and len(row["test_correct"]) == 24 and np.mean(row["test_correct"]) == pytest.approx(row["test_accuracy"])
    diff = summary["sbs_minus_finetune"]
    assert diff["questions"] == 24 and diff["seeds"] == [2, 2] and 0.0 <= diff["p_value"] <= 1.0
    assert diff["low"] <= diff["difference"] <= diff["high"]
    md = (out / "results.md").read_text()
    assert "| Distilling step-by-step (teacher labels + rationales) |" in md and "paired bootstrap" in md
    assert (out / "results.png").read_bytes()[:4] == b"\x89PNG"
    # the best student was exported to HF format and answered through transformers
    answer = summary["hf_answer"]
    assert answer["question"].startswith("predict: ") and isinstance(answer["answer"], str)
    assert {"config.json", "model.safetensors", "spiece.model"} <= set(os.listdir(out / "hf_student"))
    # a later run with the same settings reuses the pretrained student (no training: same corpus, same key)
    spec = pretrained.PretrainSpec(root=str(pretrain_dir), model_gin=DemoConfig.model_gin, steps=4,
                                   inputs_length=128, vocab_size=200)
    corpus = (home / "corpus.txt").read_text().splitlines()
    again = pretrained.pretrain(spec, corpus, say=lambda _: pytest.fail("pretrained again"))
    assert again.reused and again.model_dir == str(home / "model")
    # demo_axes adds a student on half the data to the finished demo (same test questions), with
    # the demo's model: another width is refused before anything trains
    rows_path = tmp_path / "axes" / "rows.jsonl"
    with pytest.raises(SystemExit, match=r"is not the model of --model_gin configs/demo_student.gin: d_model 64 vs 128"):
        demo_axes_cli.main(["--out_dir", str(out), "--pretrained", str(home), "--model_gin", "configs/demo_student.gin",
                            "--methods", "sbs_teacher", "--fractions", "0.5", "--seeds", "0", "--rows", str(rows_path)])
    assert demo_axes_cli.main(["--out_dir", str(out), "--pretrained", str(home), "--methods", "sbs_teacher",
                               "--fractions", "0.5", "--seeds", "0", "--train_steps", "2", "--rows", str(rows_path)]) == 0
    (axes_row,) = [json.loads(line) for line in rows_path.read_text().splitlines()]
    assert (axes_row["method"], axes_row["fraction"], axes_row["seed"], axes_row["steps_run"]) == ("sbs_teacher", 0.5, 0, 2)
    assert axes_row["jobs"] == len(os.sched_getaffinity(0))  # --jobs 0: one per core (one cell: trained here)
    assert len(axes_row["test_correct"]) == 24
    assert np.mean(axes_row["test_correct"]) == pytest.approx(axes_row["test_accuracy"])


def test_mini_sweep_resumes(tmp_path, capsys):
    config = {"dataset": "arith", "out_dir": str(tmp_path / "sweep"), "teacher": "scripted:arith",
              "sizes": {"d32": "configs/sweeps/models/tiny_d32.gin"},
              "methods": ["standard_finetune", "sbs_teacher"], "fractions": [0.5, 1.0],
              "train_steps": 2, "eval_every": 2, "batch_size": 8, "train_size": 64, "eval_size": 16,
              "vocab_size": 200, "feature_lengths": {"inputs": 128, "targets": 32}}
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(config))
    assert cli.main(["sweep", "--config", str(path)]) == 0
    first = capsys.readouterr().out
    assert "cells run: 4, skipped (already done): 0" in first
    rows = tables.read_csv(tmp_path / "sweep" / "results.csv")
    assert sorted((r["method"], r["fraction"]) for r in rows) == [
        ("sbs_teacher", 0.5), ("sbs_teacher", 1.0), ("standard_finetune", 0.5), ("standard_finetune", 1.0)]
    assert os.path.exists(tmp_path / "sweep" / "accuracy_vs_data.png")
    # a finished cell is never trained again; a lost result is recomputed
    lost = sweep.grid(sweep.load_config(str(path)))[1]
    os.remove(sweep.result_path(sweep.load_config(str(path)), lost))
    assert cli.main(["sweep", "--config", str(path)]) == 0
    assert "cells run: 1, skipped (already done): 3" in capsys.readouterr().out
    assert cli.main(["sweep", "--config", str(path), "--dry_run"]) == 0
    assert capsys.readouterr().out.count("done  ") == 4


# --- the README's "real thing" flags: a paper dataset, the Gemini teacher, a pretrained T5 ----------

sys.path.insert(0, os.path.dirname(__file__))
import fake_gemini as fg  # noqa: E402
from test_teacher_gemini import API_KEY, FAST_RETRY, server_totals  # noqa: E402

SVAMP_QUESTION = re.compile(r"Q: (.*?)\nA:", re.S)  # svamp.json's query template; the last one is asked
TINY_GIN = """include 'gin/models/t5_1_1/tiny.gin'
T5Config.vocab_size = 256
T5Config.d_model = 32
T5Config.d_kv = 8
T5Config.d_ff = 64
T5Config.num_heads = 4
T5Config.dropout_rate = 0.0
"""


def svamp_responder(golds: dict[str, str]):
    """Chain-of-thought in the few-shot answer format (`... The answer is (expr).`, parsing.parse_math);
    every fourth question (by a stable hash) gets a wrong expression."""
    def responder(call: fg.Call) -> fg.Reply:
        question = SVAMP_QUESTION.findall(call.prompt)[-1]
        gold = golds[question]
        numbers = re.findall(r"\d+(?:\.\d+)?", question)
        label = f"( {gold} + 1.0 )" if zlib.crc32(question.encode()) % 4 == 0 else gold
        rationale = f"The problem gives the numbers {', '.join(numbers)}. Combining them step by step gives the result."
        return fg.reply_text(call, f"{rationale} The answer is {label}.")
    return responder


def pretrained_hf_t5(tmp_path, shared_data) -> tuple[str, str, str]:
    """(HF dir, spiece.model, model gin) of a tiny randomly initialised "pretrained" T5: a real
    transformers checkpoint whose vocabulary is a SentencePiece model of SVAMP text."""
    import sentencepiece as spm
    import torch
    import transformers

    from t5x_sbs.data import vocab
    from t5x_sbs.experiments import runner

    hf_dir = tmp_path / "pretrained"
    spm_path = vocab.train_sentencepiece(vocab.dataset_texts("svamp", str(shared_data)),
                                         str(hf_dir / "spiece.model"), 200)
    # laid out like a real T5 (32,000 pieces in 32,128 rows): pieces + 100 sentinels, padded to
    # 128, so its rows are not the vocabulary's padded size that a from-scratch student binds
    rows = -(-(spm.SentencePieceProcessor(model_file=spm_path).get_piece_size() + 100) // 128) * 128
    assert rows == 384 and rows != runner.padded_vocab_size(spm_path)
    config = transformers.T5Config(vocab_size=rows, d_model=32, d_kv=8, d_ff=64, num_heads=4, num_layers=2,
                                   num_decoder_layers=2, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                                   dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    model = transformers.T5ForConditionalGeneration(config)
    if model.lm_head.weight.data_ptr() == model.shared.weight.data_ptr():
        # transformers >= 5 forces T5Config.tie_word_embeddings = True (scale_decoder_outputs keeps
        # the v1.1 "no scaling"): give lm_head its own weights, as in real v1.1 checkpoints.
        model.lm_head.weight = torch.nn.Parameter(torch.randn_like(model.shared.weight))
    model.save_pretrained(hf_dir)
    gin_path = tmp_path / "tiny_pretrained.gin"
    gin_path.write_text(TINY_GIN)
    return str(hf_dir), spm_path, str(gin_path)


def hf_state(directory) -> dict:
    import transformers

    model = transformers.T5ForConditionalGeneration.from_pretrained(directory)
    return {k: v.detach().numpy() for k, v in model.state_dict().items()}


@pytest.mark.shared_data
def test_demo_real_flags_gemini_svamp_pretrained(tmp_path, shared_data, monkeypatch, capsys, caplog):
    """README's "real thing": `--dataset svamp --data_dir`, `--teacher gemini:...` (the real SDK against
    the loopback fake, `--limit` through --teacher_args) and `--initial_checkpoint HF_DIR --model_gin`
    (a transformers-written T5 laid out like a real one; its own spiece.model and embedding rows
    taken from the dir), all five demo steps on a 2-core CPU."""
    from t5x_sbs.data import sources

    hf_dir, spm_path, model_gin = pretrained_hf_t5(tmp_path, shared_data)
    golds = {e.text: e.gold for split in ("train", "test")
             for e in sources.load_examples("svamp", str(shared_data), split)}
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.setenv("GEMINI_API_KEY", API_KEY)
    out = tmp_path / "demo"
    caplog.set_level(logging.INFO, logger="t5x_sbs.trainer.train_loop")
    with fg.FakeGemini(svamp_responder(golds), lifetime_s=300) as fake:
        teacher_args = " ".join(["--base_url", fake.url, "--limit", "24", "--concurrency", "4", *FAST_RETRY])
        argv = ["demo", "--out_dir", str(out), "--dataset", "svamp", "--data_dir", str(shared_data),
                "--teacher", "gemini:gemini-2.5-flash", "--teacher_args", teacher_args,
                "--initial_checkpoint", hf_dir, "--model_gin", model_gin,  # its spiece.model: the HF dir's
                "--train_steps", "4", "--eval_every", "2", "--batch_size", "8", "--seeds", "0",
                "--inputs_length", "96", "--targets_length", "24",
                "--methods", "standard_finetune,standard_distill,sbs_teacher",  # three arms keep it short
                "--jobs", "1"]  # students in this process, as on an accelerator (the test above: workers)
        assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    for step in ("[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"):
        assert step in printed
    # only the first 24 examples of each split were asked (a validation example is a train-file row:
    # asked once), authenticated from the env; the ledger counts what the server sent
    asked = {e.id for split in ("train", "validation", "test")
             for e in sources.load_examples("svamp", str(shared_data), split)[:24]}
    assert {c.api_key for c in fake.calls} == {API_KEY} and len(fake.calls) == len(asked)
    ledger = json.loads((out / "teacher" / "ledger.json").read_text())
    assert ledger["records"] == len(fake.calls) and ledger["statuses"] == {"ok": len(fake.calls)}
    assert ledger["tokens"] == server_totals(fake) and ledger["cost_usd"] > 0
    assert 0.5 < ledger["label_accuracy"] < 1.0
    assert "every student trains on the annotated train examples only" in printed
    # every student started from the HF checkpoint
    starts = [r.getMessage() for r in caplog.records if r.getMessage().startswith("initialised from")]
    assert starts == [f"initialised from {hf_dir}"] * 3
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == ["standard_finetune", "standard_distill", "sbs_teacher"]
    assert {r["dataset"] for r in rows} == {"svamp"}
    for row in rows:
        assert 0.0 <= float(row["test_accuracy"]) <= 1.0 and int(row["best_step"]) in (2, 4)
    for model_dir in (out / "models").iterdir():  # the students read the checkpoint's own vocabulary
        assert (model_dir / "spiece.model").read_bytes() == pathlib.Path(spm_path).read_bytes()
    # the exported student is the pretrained model moved a few small steps (from scratch: unrelated weights)
    start, student = hf_state(hf_dir), hf_state(out / "hf_student")
    assert set(student) == set(start)
    moved = [float(np.abs(student[k] - start[k]).max() / np.abs(start[k]).max()) for k in start]
    assert max(moved) < 0.05 and max(moved) > 0
    answer = json.loads((out / "results.json").read_text())["hf_answer"]
    assert answer["question"].startswith("predict: ") and isinstance(answer["answer"], str)
    assert answer["gold"] == golds[answer["question"][len("predict: "):]]


@pytest.mark.shared_data
def test_partial_teacher_store_tasks_use_the_annotated_examples(tmp_path, shared_data):
    """What `--teacher_args '--limit N'` leaves: a store covering part of the data. By default the
    unasked examples are an error naming the store; the demo's 'annotated' coverage trains every
    task on the annotated train examples and keeps validation/test labels gold on all examples."""
    import gin
    import seqio

    from t5x_sbs.tasks import catalog
    catalog.register_all()
    from t5x_sbs.data import sources, vocab
    from t5x_sbs.records import TeacherRecord

    train = sources.load_examples("svamp", str(shared_data), "train")[:30]
    test = sources.load_examples("svamp", str(shared_data), "test")[:10]
    store = tmp_path / "store.jsonl"
    store.write_text("".join(TeacherRecord(
        id=e.id, dataset="svamp", split=e.split, input=e.input, gold=e.gold, rationale=f"Because {e.gold}.",
        label=e.gold, status="ok", teacher="scripted:test", prompt_hash="h").to_json() + "\n" for e in train + test))
    spm_path = vocab.train_sentencepiece([e.text for e in train + test] + [e.gold for e in train],
                                         str(tmp_path / "v.model"), 150)

    def ids(name, split="train"):
        dataset = seqio.get_mixture_or_task(name).get_dataset({"inputs": 64, "targets": 16}, split=split, shuffle=False)
        return [r["id"].decode() for r in dataset.as_numpy_iterator()]

    gin.clear_config()
    try:
        for key, value in (("vocabulary_path.path", spm_path), ("data_dir.path", str(shared_data)),
                           ("teacher_files.files", {"svamp": str(store)})):
            gin.bind_parameter(f"tasks.config.{key}", value)
        with pytest.raises(ValueError, match=re.escape(str(store)) + ".*examples have no record"):
            ids("svamp_label_llm")
        with gin.unlock_config():
            gin.bind_parameter("tasks.config.teacher_coverage.mode", "annotated")
        annotated = sorted(e.id for e in train if not sources.in_validation_carve_out(e.id))
        for name in ("svamp_label_gold", "svamp_label_llm", "svamp_rationale_llm"):
            assert sorted(ids(name)) == annotated, name
        assert len(ids("svamp_label_llm", "test")) == 200  # evaluation: gold labels on every example
        assert sorted(ids("svamp_rationale_llm", "test")) == sorted(e.id for e in test)
    finally:
        gin.clear_config()



@pytest.mark.shared_data
def test_demo_replay_palm_svamp_steps_1_and_2(tmp_path, capsys, shared_data):
    """`--teacher replay:palm --dataset svamp`: the demo's data and teacher steps put the paper's
    stored PaLM outputs (every split, offline, ~1 s) through store + ledger, and the tasks built on
    that store (the demo's gin bindings) hold exactly the rows of the tasks' own PaLM replay.
    Training on a SVAMP store is covered by the Gemini test above (a full run here costs ~70 s)."""
    import argparse

    import gin
    import seqio

    from t5x_sbs import tasks
    from t5x_sbs.tasks import catalog
    catalog.register_all()
    from t5x_sbs.cli import demo as demo_cli
    from t5x_sbs.experiments import preparation

    parser = argparse.ArgumentParser()
    demo_cli.add_arguments(parser)
    args = parser.parse_args(["--out_dir", str(tmp_path / "demo"), "--dataset", "svamp", "--data_dir",
                              str(shared_data), "--teacher", "replay:palm", "--vocab_size", "200"])
    settings = demo_cli.config_from_args(args).data
    data_dir = preparation.prepare_data(settings)
    store = preparation.annotate(settings, data_dir)
    printed = capsys.readouterr().out
    assert "[1/5] dataset svamp: {'train': 723, 'validation': 77, 'test': 200}" in printed
    assert "teacher coverage" not in printed  # the replay answers every example
    ledger = json.loads((tmp_path / "demo" / "teacher" / "ledger.json").read_text())
    # 800 train (the validation carve-out is part of the train file) + 200 test; 15 PaLM outputs do not parse
    assert ledger["records"] == 1000 and ledger["statuses"] == {"ok": 985, "unparseable": 15}
    assert 0.7 < ledger["label_accuracy"] < 0.8 and ledger["cost_usd"] == 0

    def rows(name, split):
        dataset = seqio.get_mixture_or_task(name).get_dataset({"inputs": 64, "targets": 16}, split=split, shuffle=False)
        return [(r["id"], r["targets_pretokenized"]) for r in dataset.as_numpy_iterator()]

    base = ['tasks.config.data_dir.path = "%s"' % data_dir,
            'tasks.config.vocabulary_path.path = "%s"' % preparation.vocabulary(settings, data_dir, store)]
    got = {}
    for source, bindings in (("store", preparation.register(settings, data_dir, store)), ("palm", ())):
        gin.clear_config()
        gin.parse_config(base + list(bindings))
        assert (tasks.config.teacher_files() == {"svamp": os.path.abspath(store)}) == (source == "store")
        got[source] = {(name, split): rows(name, split) for name in ("svamp_label_llm", "svamp_rationale_llm")
                       for split in ("train", "validation", "test")}
    gin.clear_config()
    assert got["store"] == got["palm"]
    assert len(got["store"][("svamp_label_llm", "train")]) > 700

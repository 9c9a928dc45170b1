"""One reading rule for teacher stores (ok beats non-ok, one prompt group) and the samples modes."""
from __future__ import annotations

import json
import os
import sys

import gin
import pytest

from t5x_sbs.data import sources
from t5x_sbs.teacher.store_reading import TeacherReading, majority
from t5x_sbs.records import Example, TeacherRecord
from t5x_sbs.teacher import ledger
from t5x_sbs.teacher.store import StoreError, TeacherStore, read_store
from t5x_sbs.teacher import store_reading


def _rec(example: str, sample: int, label: str | None, status: str = "ok", prompt_hash: str = "h1",
         rationale: str | None = None, teacher: str = "t:m", gold: str = "right") -> TeacherRecord:
    ok = status == "ok"
    return TeacherRecord(id=example, dataset="cqa", split="train", input={}, gold=gold,
                         rationale=(rationale or f"{example} s{sample} says {label}") if ok else None,
                         label=label if ok else None, status=status, teacher=teacher, prompt_hash=prompt_hash,
                         sample=sample, usage={"total": 10})


def _write(path, records):
    path.write_text("".join(r.to_json() + "\n" for r in records))
    return str(path)


def _examples(n=3):
    return [Example(id=f"e{i}", dataset="cqa", split="train", text=f"q{i}", input={}, gold="right") for i in range(n)]


# e0: samples disagree 1 vs 2 (vote 'right'); e1: sample 0 failed, 1 ok; e2: a 1-1 tie (earliest wins).
DISAGREEING = [_rec("e0", 0, "wrong"), _rec("e0", 1, "right"), _rec("e0", 2, "Right."),
               _rec("e1", 0, None, "failed"), _rec("e1", 1, "right"),
               _rec("e2", 0, "wrong"), _rec("e2", 1, "right")]


def _read(tmp_path, mode, records=DISAGREEING, **kw):
    path = _write(tmp_path / "s.jsonl", records)
    outputs = store_reading.teacher_from_store(path, _examples(), reading=TeacherReading(samples=mode, **kw))
    return {o.example.id: o for o in outputs}


def test_first_keeps_todays_lowest_sample(tmp_path):
    out = _read(tmp_path, "first")
    assert [out[i].labels() for i in ("e0", "e1", "e2")] == [["wrong"], [], ["wrong"]]
    assert out["e1"].parsed.status == "failed" and out["e0"].rationales() == ["e0 s0 says wrong"]


def test_vote_takes_the_majority_label_and_its_agreeing_rationales(tmp_path):
    out = _read(tmp_path, "vote")
    assert out["e0"].labels() == ["right"]  # 'right' and 'Right.' agree by the dataset's label rule
    assert out["e0"].rationales() == ["e0 s1 says right", "e0 s2 says Right."]
    assert out["e1"].labels() == ["right"] and out["e1"].rationales() == ["e1 s1 says right"]
    assert out["e2"].labels() == ["wrong"] and out["e2"].rationales() == ["e2 s0 says wrong"]  # tie: earliest


def test_vote_drops_identical_rationale_copies(tmp_path):
    """Agreeing samples that repeat a rationale (up to whitespace) give one row, the lowest sample's."""
    copies = [_rec("e0", 0, "right", rationale="same words"), _rec("e0", 1, "right", rationale="other words"),
              _rec("e0", 2, "right", rationale=" same words\n"), _rec("e0", 3, "wrong", rationale="same words"),
              _rec("e0", 4, "right", rationale="other words")]
    path = _write(tmp_path / "s.jsonl", copies)
    (out,) = store_reading.teacher_from_store(path, _examples(1), reading=TeacherReading(samples="vote"))
    assert out.rationales() == ["same words", "other words"] and out.labels() == ["right"]
    assert out.sample_labels == ("right", "right", "right", "wrong", "right")  # agreement counts all
    path = _write(tmp_path / "s2.jsonl", [_rec("e0", 0, "right", rationale="A"), _rec("e0", 1, "right", rationale="B"),
                                          _rec("e0", 2, "right", rationale="A")])
    (out,) = store_reading.teacher_from_store(path, _examples(1), reading=TeacherReading(samples="vote"))
    assert out.rationales() == ["A", "B"] and out.parsed.rationale == "A"  # sample 0 stays the main one


def test_all_uses_every_ok_sample(tmp_path):
    out = _read(tmp_path, "all")
    assert out["e0"].labels() == ["wrong", "right", "Right."]
    assert len(out["e0"].rationales()) == 3 and out["e1"].labels() == ["right"]


def test_majority_ties_and_empty():
    assert majority("svamp", ["( 2 + 3 )", "5", "( 1 + 1 )"]) == ("( 2 + 3 )", [0, 1])  # by value
    assert majority("cqa", []) == (None, [])


def test_ok_beats_a_later_failure_of_the_same_key_in_every_reader(tmp_path):
    records = [_rec("e0", 0, "right"), _rec("e0", 0, None, "failed"), _rec("e1", 0, None, "failed"),
               _rec("e1", 0, "right"), _rec("e2", 0, None, "failed"), _rec("e2", 0, None, "blocked")]
    path = _write(tmp_path / "s.jsonl", records)
    contents = read_store(path)
    assert {k[0]: r.status for k, r in contents.records.items()} == {"e0": "ok", "e1": "ok", "e2": "blocked"}
    assert (contents.lines, contents.replaced) == (6, 3)
    tasks_view = {o.example.id: o.parsed.status for o in store_reading.teacher_from_store(path, _examples())}
    assert tasks_view == {"e0": "ok", "e1": "ok", "e2": "blocked"}
    assert {k[0]: r.status for k, r in TeacherStore(path).load(repair=False).items()} == tasks_view
    assert ledger.summarize(contents.records.values())["statuses"] == {"ok": 2, "blocked": 1}


def test_a_store_of_two_prompts_is_refused_or_read_by_the_chosen_one(tmp_path):
    """A zero-shot rerun (all unparseable) on a few-shot store (all ok): never mixed by id order."""
    records = [_rec(f"e{i}", 0, None, "unparseable", prompt_hash="zzz999") for i in range(3)]
    records += [_rec(f"e{i}", 0, "right", prompt_hash="aaa111") for i in range(3)]
    path = _write(tmp_path / "s.jsonl", records)
    with pytest.raises(StoreError) as info:
        store_reading.teacher_from_store(path, _examples())
    message = str(info.value)
    assert "s.jsonl" in message and "'aaa111': 3 records, 3 ok" in message and "'zzz999': 3 records, 0 ok" in message
    chosen = store_reading.teacher_from_store(path, _examples(), reading=TeacherReading(prompt_hash="aaa"))
    assert [o.parsed.status for o in chosen] == ["ok"] * 3
    with pytest.raises(StoreError, match="holds no records matching"):
        store_reading.teacher_from_store(path, _examples(), reading=TeacherReading(teacher="other:x"))


def test_gin_setting_reaches_the_tasks_rows(tmp_path):
    pytest.importorskip("seqio")
    from t5x_sbs.tasks import config, registry

    path = _write(tmp_path / "s.jsonl", DISAGREEING)
    examples = _examples()

    def teacher(data_dir, split, chosen):
        return store_reading.teacher_from_store(path, chosen, examples, reading=config.teacher_reading())

    spec = registry.DatasetSpec(name="toy", load=lambda d, s: list(examples), teacher=teacher)
    gin.clear_config()
    try:
        gin.parse_config("tasks.config.teacher_reading.samples = 'vote'")
        labels = [(e.id, t) for e, t in registry.label_targets(spec, "train", "llm")]
        rationales = [(e.id, t) for e, t in registry.rationale_targets(spec, "train")]
        gin.parse_config("tasks.config.teacher_reading.samples = 'votes'")
        with pytest.raises(ValueError, match="teacher_reading.*'votes'"):
            config.teacher_reading()
    finally:
        gin.clear_config()
    assert labels == [("e0", "right"), ("e1", "right"), ("e2", "wrong")]
    assert rationales == [("e0", "e0 s1 says right"), ("e0", "e0 s2 says Right."), ("e1", "e1 s1 says right"),
                          ("e2", "e2 s0 says wrong")]


def test_data_report_prints_sample_agreement_and_vote_accuracy(tmp_path, capsys):
    sys.path.insert(0, os.path.dirname(__file__))
    import fake_gemini

    rows = fake_gemini.write_cqa_dataset(str(tmp_path), 3)
    records = [_rec(r["id"], s, label, gold=r["answer"]) for r, labels in
               zip(rows, [("right0", "right0", "x"), ("y", "y", "right1"), ("right2", "right2", "right2")])
               for s, label in enumerate(labels)]
    store = _write(tmp_path / "s.jsonl", records)
    from t5x_sbs.cli import main

    assert main(["data-report", "--data_dir", str(tmp_path), "--dataset", "cqa", "--split", "train",
                 "--teacher_file", store, "--samples", "vote", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["sample_agreement"] == round(100 * (2 / 3 + 2 / 3 + 1) / 3, 2)
    assert printed["samples_unanimous"] == round(100 / 3, 2)
    assert printed["vote_label_accuracy"] == round(200 / 3, 2)  # e1's vote 'y' is wrong
    assert printed["rationale_rows"] == 2 + 2 + 3

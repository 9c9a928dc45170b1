"""The JSONL store (torn tails, bad lines, canonical order), replay and --fraction."""
from __future__ import annotations

import asyncio
import json
import os
import re
import sys

import pytest

from t5x_sbs.data import sources
from t5x_sbs.teacher.parsing import parse_teacher_output
from t5x_sbs.records import RecordError, TeacherRecord
from t5x_sbs.cli import rationales as teacher_cli
from t5x_sbs.teacher.ledger import summarize
from t5x_sbs.teacher.store import TeacherStore, example_order

sys.path.insert(0, os.path.dirname(__file__))
import fake_gemini  # noqa: E402


def _record(i: int, status: str = "ok", teacher: str = "t:m") -> TeacherRecord:
    ok = status == "ok"
    return TeacherRecord(id=f"e{i}", dataset="cqa", split="train", input={}, gold="g", rationale="r" if ok else None,
                         label="g" if ok else None, status=status, teacher=teacher, prompt_hash="h",
                         usage={"prompt": 10, "candidates": 2, "total": 12})


def test_torn_tail_is_cut_and_the_rest_kept(tmp_path):
    store = TeacherStore(tmp_path / "s.jsonl")
    for i in range(3):
        store.append(_record(i))
    store.close()
    with open(store.path, "a") as f:
        f.write(_record(3).to_json()[:40])  # what a SIGKILL mid-write leaves
    assert sorted(k[0] for k in store.load()) == ["e0", "e1", "e2"]
    assert open(store.path).read().count("\n") == 3 and open(store.path).read().endswith("\n")


def test_bad_middle_line_names_file_and_line(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text(_record(0).to_json() + "\n{not json\n" + _record(1).to_json() + "\n")
    with pytest.raises(RecordError, match=r"s\.jsonl:2"):
        TeacherStore(path).load()
    path.write_text(_record(0).to_json() + "\n" + json.dumps({"id": "x", "input": {}, "rationale": None,
                                                              "label": None, "status": "weird"}) + "\n")
    with pytest.raises(RecordError, match=r"s\.jsonl:2: field 'status'"):
        TeacherStore(path).load()


def test_latest_record_wins_and_canonical_order_is_stable(tmp_path):
    store = TeacherStore(tmp_path / "s.jsonl")
    for rec in (_record(2), _record(0, "failed"), _record(1), _record(0), _record(5, teacher="other:x")):
        store.append(rec)
    order = example_order(["e0", "e1", "e2"])
    assert store.canonicalize(order) == 4
    first = open(store.path).read()
    assert [json.loads(line)["id"] for line in first.splitlines()] == ["e5", "e0", "e1", "e2"]
    assert json.loads(first.splitlines()[1])["status"] == "ok"
    store.canonicalize(order)
    assert open(store.path).read() == first


@pytest.mark.shared_data
def test_replay_writes_palm_outputs_through_the_same_parser(shared_data, tmp_path):
    out = tmp_path / "svamp_test.jsonl"
    args = ["--dataset", "svamp", "--data_dir", str(shared_data), "--split", "test", "--teacher", "replay:palm",
            "--out", str(out), "--no_progress"]
    from t5x_sbs.cli import main
    assert main(["rationales", *args]) == 0
    lines = [json.loads(line) for line in open(out)]
    examples = sources.load_examples("svamp", str(shared_data), "test")
    palm = sources.palm_outputs_by_id("svamp", str(shared_data), "test")
    assert [r["id"] for r in lines] == [e.id for e in examples]  # one record each, source order
    for r in lines:
        parsed = parse_teacher_output("svamp", palm[r["id"]])
        assert r["teacher"] == "replay:palm" and r["raw"] == palm[r["id"]]
        assert (r["status"], r["label"]) == (parsed.status, parsed.label)
    report = summarize(TeacherStore(out).load().values())
    assert 0.6 < report["label_accuracy"] < 0.9  # MANIFEST: PaLM agrees with gold on ~74% of SVAMP test
    assert main(["rationales", *args]) == 0  # resuming a finished store changes nothing
    assert [json.loads(line) for line in open(out)] == lines


def test_fraction_selects_the_tasks_rationale_subset():
    examples = [sources.Example(id=f"train-{i}", dataset="cqa", split="train", text="t", input={}, gold=None)
                for i in range(400)]
    half = teacher_cli.select(examples, 0.5, None)
    quarter = teacher_cli.select(examples, 0.25, None)
    assert {e.id for e in quarter} <= {e.id for e in half}
    assert 150 < len(half) < 250 and 60 < len(quarter) < 140
    assert all(sources.id_fraction(e.id, salt="rationale") < 0.5 for e in half)
    assert teacher_cli.select(examples, 1.0, 7) == examples[:7]
    with pytest.raises(SystemExit, match="--fraction"):
        teacher_cli.select(examples, 0.0, None)


def test_runner_records_backend_exceptions_as_failed(tmp_path):
    from t5x_sbs.teacher.backends import TeacherBackend
    from t5x_sbs.teacher.prompting import load_prompt
    from t5x_sbs.teacher.runner import RunOptions, Runner

    class Broken(TeacherBackend):
        teacher = "broken:x"

        async def generate(self, request):
            raise RuntimeError(f"boom {request.example.id}")

    examples = [sources.Example(id=f"q{i}", dataset="cqa", split="train", text="t", input={}, gold="g")
                for i in range(3)]
    runner = Runner(Broken(), load_prompt("cqa", "zero_shot"), TeacherStore(tmp_path / "s.jsonl"),
                    RunOptions(progress=False))
    summary = asyncio.run(runner.run(examples))
    assert summary["statuses"] == {"failed": 3}
    assert [r.error for r in TeacherStore(tmp_path / "s.jsonl").load().values()] == [
        "RuntimeError: boom q0", "RuntimeError: boom q1", "RuntimeError: boom q2"]


def test_store_creates_its_folder(tmp_path):
    store = TeacherStore(tmp_path / "new" / "deeper" / "s.jsonl")
    store.append(_record(0))
    store.close()
    assert list(store.load()) == [_record(0).key]


def test_a_failing_store_surfaces_instead_of_hanging(tmp_path):
    from t5x_sbs.teacher.backends import TeacherBackend, TeacherResponse
    from t5x_sbs.teacher.prompting import load_prompt
    from t5x_sbs.teacher.runner import RunOptions, Runner

    class Echo(TeacherBackend):
        teacher = "echo:x"

        async def generate(self, request):
            return TeacherResponse(text="r. So the answer is (a) g.")

    class FullDisk(TeacherStore):
        def append(self, record):
            raise OSError("No space left on device")

    examples = [sources.Example(id=f"q{i}", dataset="cqa", split="train", text="t", input={}, gold="g")
                for i in range(20)]
    runner = Runner(Echo(), load_prompt("cqa", "zero_shot"), FullDisk(tmp_path / "s.jsonl"),
                    RunOptions(progress=False, concurrency=4))

    async def bounded():
        return await asyncio.wait_for(runner.run(examples), timeout=30)

    with pytest.raises(OSError, match="No space left"):
        asyncio.run(bounded())


def test_arith_answers_parse_like_gsm8k():
    parsed = parse_teacher_output("arith", "12 + 5 = 17. 17 - 3 = 14. The answer is 14.\n\nQ: next")
    assert (parsed.status, parsed.rationale, parsed.label) == ("ok", "12 + 5 = 17. 17 - 3 = 14.", "14")
    assert parse_teacher_output("arith", "I am not sure.").status == "unparseable"


def test_scripted_teacher_goes_through_the_same_runner_and_ledger(tmp_path):
    from t5x_sbs.data import arith
    from t5x_sbs.teacher.backends import BackendContext, make_backend
    from t5x_sbs.teacher.prompting import load_prompt
    from t5x_sbs.teacher.runner import RunOptions, Runner

    problems = arith.generate(seed=0, sizes={"train": 40})["train"]
    examples = [sources.Example(id=p.id, dataset="arith", split="train", text=p.question,
                                input={"question": p.question}, gold=p.answer) for p in problems]
    backend = make_backend("scripted:arith,error_rate=0.25", BackendContext("arith", str(tmp_path), "train"))
    store = TeacherStore(tmp_path / "s.jsonl")
    runner = Runner(backend, load_prompt("arith", "zero_shot"), store, RunOptions(progress=False))
    assert asyncio.run(runner.run(examples))["statuses"] == {"ok": 40}
    report = summarize(store.load().values())
    assert 0.5 < report["label_accuracy"] < 0.95  # wrong on about a quarter, by design
    assert report["tokens"]["prompt"] > 0 and report["cost_usd"] == 0.0


def test_cli_reports_bad_inputs_as_one_clear_line(tmp_path, capsys):
    from t5x_sbs.cli import main
    bad = tmp_path / "bad.jsonl"
    bad.write_text(_record(0).to_json() + "\n" + '{"id": 1}\n' + _record(1).to_json() + "\n")

    def one_line_error(argv, pattern):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and re.search(pattern, err), err

    one_line_error(["ledger", str(bad)], r"bad\.jsonl:2: field 'input': missing")
    fake_gemini.write_cqa_dataset(str(tmp_path), 3)
    one_line_error(["rationales", "--dataset", "cqa", "--data_dir", str(tmp_path), "--teacher", "gemini:m",
                    "--base_url", "http://127.0.0.1:9", "--out", str(bad)],  # before any request
                   r"bad\.jsonl:2: field 'input': missing")
    one_line_error(["rationales", "--dataset", "cqa", "--data_dir", str(tmp_path / "none"), "--teacher", "gemini:m",
                    "--out", str(tmp_path / "o.jsonl")], r"cqa_train\.json: file not found")


def test_ledger_counts_every_call_including_replaced_answers(tmp_path, capsys, monkeypatch):
    """First run: ex1 garbled, ex2 wrong then right on feedback; --retry-failed re-asks ex1."""
    from t5x_sbs.cli import main

    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    fake_gemini.write_cqa_dataset(str(tmp_path), 4)
    out = tmp_path / "s.jsonl"
    args = ["rationales", "--dataset", "cqa", "--data_dir", str(tmp_path), "--teacher", "gemini:gemini-2.5-flash",
            "--out", str(out), "--no_progress", "--attempts", "1", "--feedback", "2", "--concurrency", "1"]
    plans = {1: ["garbage", "ok"], 2: ["ok_if_told"]}
    summaries = []
    with fake_gemini.FakeGemini(fake_gemini.scenario_responder(plans)) as fake:
        for extra in ([], ["--retry-failed"]):
            assert main(args + ["--base_url", fake.url] + extra) == 0
            summaries.append(json.loads(capsys.readouterr().out))
        made = len(fake.calls)
    assert [s["requests"] for s in summaries] == [5, 1] and made == 6
    assert main(["ledger", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["records"] == 4 and report["calls"] == made and report["groups"][0]["calls"] == made
    replaced = [r for r in TeacherStore(out).load().values() if r.extra.get("superseded_usage")]
    assert report["replaced_answers"] == 1 and report["replaced_tokens"] == replaced[0].extra["superseded_usage"]["total"] > 0

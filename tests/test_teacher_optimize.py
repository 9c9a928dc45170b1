"""`t5x-sbs optimize-prompt`: end to end with the scripted teacher and with the real google-genai
SDK against the loopback fake; the budget cap; resume after SIGKILL without re-asking."""
from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from t5x_sbs import cli
from t5x_sbs.data import arith
from t5x_sbs.teacher import optimize, scripted
from t5x_sbs.teacher.store import read_store

sys.path.insert(0, os.path.dirname(__file__))
import fake_gemini as fg  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
API_KEY = "test-key-opro-7Hq2"
MODEL = "gemini-2.5-flash"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("arith")
    arith.write_splits(root, seed=0, sizes={"train": 200, "validation": 20, "test": 20})
    return root


def optimize_argv(data_dir, out_dir, teacher="scripted:arith", *extra):
    return ["optimize-prompt", "--dataset", "arith", "--data_dir", str(data_dir), "--teacher", teacher,
            "--out_dir", str(out_dir), "--no_progress", "--subset", "30", "--rounds", "3", "--candidates", "3",
            *extra]


def run_cli(argv, capsys) -> dict:
    assert cli.main(argv) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def scoring_records(out_dir):
    return [r for r in read_store(out_dir / "store.jsonl").records.values() if r.extra["prompt"] == "zero_shot"]


def test_scripted_end_to_end_writes_a_prompt_file_and_reruns_for_free(data_dir, tmp_path, capsys):
    out = tmp_path / "opt"
    summary = run_cli(optimize_argv(data_dir, out), capsys)
    assert summary["stopped"] == "rounds" and summary["rounds_done"] == 3 and summary["candidates"] >= 5
    assert summary["winner"]["accuracy"] > summary["baseline"]["accuracy"]  # the simulation has something to find
    history = json.loads((out / "history.json").read_text())
    assert history[0]["instruction"] == summary["baseline"]["instruction"] and history[0]["round"] == 0
    # Scored on one fixed set of 30 labelled train examples, chosen by id hash, never validation/test.
    train = optimize.train_examples("arith", str(data_dir))
    subset = {e.id for e in optimize.scoring_subset(train, 30)}
    records = scoring_records(out)
    assert {r.id for r in records} == subset and {r.split for r in records} == {"train"}
    assert len(records) == 30 * len(history) and len({r.prompt_hash for r in records}) == len(history)
    # The winner is a prompt file that `rationales --prompt FILE` reads with the recorded hash.
    spec = json.loads((out / "prompt.json").read_text())
    assert spec["zero_shot"]["instruction"].strip() == summary["winner"]["instruction"]
    store = tmp_path / "train.jsonl"
    annotated = run_cli(["rationales", "--dataset", "arith", "--data_dir", str(data_dir), "--teacher", "scripted:arith",
                         "--prompt", str(out / "prompt.json"), "--out", str(store), "--no_progress", "--limit", "20"],
                        capsys)
    assert annotated["prompt_hash"] == summary["prompt_hash"] == summary["winner"]["prompt_hash"]
    assert {r.prompt_hash for r in read_store(store).records.values()} == {summary["prompt_hash"]}
    # A rerun is answered from the store: no request, the same history and winner.
    before = {name: (out / name).read_bytes() for name in ("history.json", "prompt.json", "store.jsonl")}
    again = run_cli(optimize_argv(data_dir, out), capsys)
    assert again["requests"] == 0 and {name: (out / name).read_bytes() for name in before} == before


def test_budget_cap_stops_before_crossing_it(data_dir, tmp_path, capsys):
    full = run_cli(optimize_argv(data_dir, tmp_path / "full"), capsys)
    cap = full["spent_tokens"] // 3
    capped = run_cli(optimize_argv(data_dir, tmp_path / "capped", "scripted:arith", "--max_tokens", str(cap)), capsys)
    assert capped["stopped"] == "budget" and 0 < capped["spent_tokens"] <= cap
    assert capped["candidates"] < full["candidates"]
    assert cli.main(["ledger", str(tmp_path / "capped" / "store.jsonl"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tokens"]["total"] == capped["spent_tokens"]
    # A cap that cannot pay for scoring the baseline: one clear line, nothing asked.
    assert cli.main(optimize_argv(data_dir, tmp_path / "tiny", "scripted:arith", "--max_tokens", "100")) == 2
    assert "budget does not cover scoring the baseline" in capsys.readouterr().err
    assert read_store(tmp_path / "tiny" / "store.jsonl").records == {}
    assert cli.main(optimize_argv(data_dir, tmp_path / "usd", "scripted:arith", "--max_usd", "1")) == 2
    assert "no price for scripted:arith" in capsys.readouterr().err


def opro_responder(call: fg.Call) -> fg.Reply:
    """A canned Gemini for optimize-prompt: proposals like the scripted teacher's (a different
    one per attempt), answers solved with the scripted teacher's instruction simulation."""
    if optimize.is_meta_prompt(call.prompt):
        proposal = scripted.propose_instruction(call.prompt, seed=0, sample=call.attempt)
        return fg.reply_text(call, f"Here is a better one.\n{optimize.wrap_instruction(proposal)}")
    question = call.prompt.rsplit("Q:", 1)[1].rsplit("A:", 1)[0].strip()
    rate = min(1.0, scripted.DEFAULT_ERROR_RATE * scripted.error_factor(call.prompt))
    rationale, label, _ = scripted.ScriptedArithTeacher().answer(question, question, 0, rate)
    text = f"{rationale} The answer is {label}." if scripted.states_answer_format(call.prompt) else rationale
    return fg.reply_text(call, text)


def gemini_argv(data_dir, out_dir, url, *extra):
    return optimize_argv(data_dir, out_dir, f"gemini:{MODEL}", "--base_url", url, "--attempts", "2",
                         "--retry_initial_delay", "0.01", "--timeout", "60", "--concurrency", "2", *extra)


def server_total(fake: fg.FakeGemini) -> int:
    return sum(u["totalTokenCount"] for u in fake.usage_sent)


def test_loopback_gemini_end_to_end_and_dollar_cap(data_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.setenv("GEMINI_API_KEY", API_KEY)
    with fg.FakeGemini(opro_responder, lifetime_s=120) as fake:
        summary = run_cli(gemini_argv(data_dir, tmp_path / "full", fake.url), capsys)
        assert summary["requests"] == len(fake.calls) and summary["spent_tokens"] == server_total(fake)
        meta = [c for c in fake.calls if optimize.is_meta_prompt(c.prompt)]
        assert len(meta) == 3 * 3 and {c.body["generationConfig"]["temperature"] for c in meta} == {1.0}
        scoring = [c for c in fake.calls if not optimize.is_meta_prompt(c.prompt)]
        assert {c.body["generationConfig"].get("temperature", 0.0) for c in scoring} == {0.0}
        assert summary["winner"]["accuracy"] > summary["baseline"]["accuracy"] and summary["spent_usd"] > 0
        cap = summary["spent_usd"] / 2
        calls = len(fake.calls)
        capped = run_cli(gemini_argv(data_dir, tmp_path / "capped", fake.url, "--max_usd", f"{cap:.8f}"), capsys)
        assert capped["stopped"] == "budget" and 0 < capped["spent_usd"] <= cap
        assert capped["requests"] == len(fake.calls) - calls
    assert API_KEY not in "".join(p.read_text() for p in tmp_path.rglob("*") if p.is_file())


def test_sigkill_mid_run_then_resume_asks_nothing_twice(data_dir, tmp_path):
    out = tmp_path / "opt"
    env = {k: v for k, v in os.environ.items() if k not in ("GOOGLE_API_KEY", "GEMINI_API_KEY")}
    env["GEMINI_API_KEY"] = API_KEY
    with fg.FakeGemini(opro_responder, latency=0.03, lifetime_s=150) as fake:
        args = [sys.executable, "-m", "t5x_sbs.cli", *gemini_argv(data_dir, out, fake.url)]
        proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(fake.calls) < 60:  # past the baseline, into round 1
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        kept = len(read_store(out / "store.jsonl").records)
        asked_before = len(fake.calls)
        assert 30 < kept < 100, "the run was not interrupted mid-way"
        resumed = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        final = len(read_store(out / "store.jsonl").records)
        # Every resumed request made a new record: nothing stored before the kill was asked again;
        # at most the two requests in flight at the kill were lost (and asked again).
        assert len(fake.calls) - asked_before == final - kept == json.loads(resumed.stdout)["requests"]
        assert asked_before - kept <= 2
    with fg.FakeGemini(opro_responder) as idle:   # a third run: everything is in the store
        again = subprocess.run([sys.executable, "-m", "t5x_sbs.cli", *gemini_argv(data_dir, out, idle.url)],
                               cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0 and idle.calls == [], again.stderr[-2000:]
    assert json.loads(again.stdout)["winner"] == json.loads(resumed.stdout)["winner"]

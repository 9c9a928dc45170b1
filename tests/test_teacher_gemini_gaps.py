"""The SDK's gaps, closed: a 429's Retry-After pauses every request start; a connection dropped
mid-body is retried like a 5xx (real google-genai SDK against the loopback fake)."""
from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from t5x_sbs.cli import main

sys.path.insert(0, os.path.dirname(__file__))
import fake_gemini as fg  # noqa: E402

pytestmark = pytest.mark.fault
FAST_RETRY = ["--attempts", "4", "--retry_initial_delay", "0.02", "--retry_max_delay", "5", "--timeout", "5"]


@pytest.fixture(autouse=True)
def _api_key(monkeypatch):
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")


def _run(tmp_path, url, *extra):
    return main(["rationales", "--dataset", "cqa", "--data_dir", str(tmp_path / "data"), "--teacher", "gemini:m",
                 "--base_url", url, "--no_progress", "--out", str(tmp_path / "s.jsonl"), *FAST_RETRY, *extra])


def _timed(responder):
    """The responder, recording (time, example index, attempt) of every call."""
    seen, lock = [], threading.Lock()

    def wrapped(call):
        with lock:
            seen.append((time.monotonic(), fg.example_index(call), call.attempt))
        return responder(call)
    return wrapped, seen


def test_connection_dropped_mid_body_is_retried(tmp_path):
    fg.write_cqa_dataset(str(tmp_path / "data"), 4)
    with fg.FakeGemini(fg.scenario_responder({1: ["dropped", "ok"], 2: ["dropped"] * 4})) as fake:
        assert _run(tmp_path, fake.url, "--concurrency", "1") == 0
        attempts = [fg.example_index(c) for c in fake.calls]
    from t5x_sbs.teacher.store import read_store

    statuses = {k[0]: r.status for k, r in read_store(tmp_path / "s.jsonl").records.items()}
    assert statuses == {"ex0000": "ok", "ex0001": "ok", "ex0002": "failed", "ex0003": "ok"}
    assert attempts.count(1) == 2 and attempts.count(2) == 4  # like a 5xx: up to --attempts


def test_retry_after_pauses_every_request_start(tmp_path):
    fg.write_cqa_dataset(str(tmp_path / "data"), 8)
    responder, seen = _timed(fg.scenario_responder({0: ["429_retry_after_1.5", "ok"]}))
    with fg.FakeGemini(responder) as fake:
        assert _run(tmp_path, fake.url, "--concurrency", "1") == 0
        assert len(fake.calls) == 9
    rate_limited_at = next(t for t, i, a in seen if i == 0 and a == 0)
    later = [(t - rate_limited_at, i) for t, i, a in seen if (i, a) != (0, 0)]
    assert all(dt >= 1.4 for dt, _ in later), later  # the retry and every other example waited

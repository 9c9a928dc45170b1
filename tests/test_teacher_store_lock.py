"""One writer per store: the lock, the writable-folder check before any request, OS errors as lines."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from t5x_sbs.cli import main
from t5x_sbs.teacher.store import StoreError, StoreLockedError, TeacherStore

sys.path.insert(0, os.path.dirname(__file__))
import fake_gemini  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _api_key(monkeypatch):
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")


def _rationales(data_dir, out, url="http://127.0.0.1:9", *extra):
    return ["rationales", "--dataset", "cqa", "--data_dir", str(data_dir), "--teacher", "gemini:m",
            "--base_url", url, "--attempts", "1", "--timeout", "5", "--no_progress", "--out", str(out), *extra]


def test_second_writer_fails_at_once_naming_store_and_holder(tmp_path):
    store = TeacherStore(tmp_path / "s.jsonl")
    with store.writing():
        with pytest.raises(StoreLockedError, match=r"s\.jsonl: another writer holds .*s\.jsonl\.lock .*\"pid\": "
                           + str(os.getpid())):
            TeacherStore(tmp_path / "s.jsonl").acquire()
    with TeacherStore(tmp_path / "s.jsonl").writing():  # released: the next writer gets it
        pass


def test_concurrent_rationales_process_fails_before_any_request(tmp_path):
    """A real second process: exit 2, one line, and the fake server saw no request from it."""
    fake_gemini.write_cqa_dataset(str(tmp_path), 3)
    out = tmp_path / "s.jsonl"
    with fake_gemini.FakeGemini(fake_gemini.fixed_answer_responder()) as server:
        with TeacherStore(out).writing():
            proc = subprocess.run([sys.executable, "-m", "t5x_sbs.cli", *_rationales(tmp_path, out, server.url)],
                                  cwd=REPO, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "another writer holds" in proc.stderr
        assert server.calls == []
        assert main(_rationales(tmp_path, out, server.url)) == 0  # the lock is free again
        assert len(server.calls) == 3


@pytest.mark.parametrize("where", ["under_a_file", "read_only_store"])
def test_unwritable_output_fails_before_any_request(tmp_path, capsys, where):
    fake_gemini.write_cqa_dataset(str(tmp_path), 2)
    if where == "under_a_file":
        (tmp_path / "plain").write_text("x")
        out = tmp_path / "plain" / "s.jsonl"
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes read-only files")
        out = tmp_path / "s.jsonl"
        out.write_text("")
        out.chmod(0o444)
    with fake_gemini.FakeGemini(fake_gemini.fixed_answer_responder()) as server:
        assert main(_rationales(tmp_path, out, server.url)) == 2
        assert server.calls == []
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "s.jsonl" in err and "not writable" in err, err


def test_disk_full_mid_run_is_one_line_and_resume_is_exact(tmp_path, capsys, monkeypatch):
    fake_gemini.write_cqa_dataset(str(tmp_path), 6)
    out = tmp_path / "s.jsonl"
    writes = {"n": 0}
    real_append = TeacherStore.append

    def full_after_three(self, record):
        writes["n"] += 1
        if writes["n"] > 3:
            raise OSError(28, "No space left on device", self.path)
        real_append(self, record)

    with fake_gemini.FakeGemini(fake_gemini.fixed_answer_responder()) as server:
        monkeypatch.setattr(TeacherStore, "append", full_after_three)
        assert main(_rationales(tmp_path, out, server.url, "--concurrency", "1")) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "No space left on device" in err and "s.jsonl" in err, err
        monkeypatch.setattr(TeacherStore, "append", real_append)
        assert main(_rationales(tmp_path, out, server.url)) == 0
        asked = [fake_gemini.example_index(c) for c in server.calls]
    assert sorted(asked) == [0, 1, 2, 3, 3, 4, 5]  # only the example whose write failed is asked again
    assert len(out.read_text().splitlines()) == 6


def test_a_directory_as_store_is_named(tmp_path):
    (tmp_path / "d.jsonl").mkdir()
    with pytest.raises(StoreError, match=r"d\.jsonl: is a directory"):
        TeacherStore(tmp_path / "d.jsonl").acquire()

"""Progress in a log file or a pipe is whole lines (no carriage returns); a terminal gets tqdm's bar."""
from __future__ import annotations

import io
import os
import subprocess
import sys

from t5x_sbs.data import arith
from t5x_sbs.progress import LineProgress, progress

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_file_gets_lines_and_a_terminal_gets_the_bar():
    log = io.StringIO()
    bar = progress(4, desc="train", unit="step", file=log, every_s=0)
    assert isinstance(bar, LineProgress)
    for _ in range(4):
        bar.update(1)
        bar.set_postfix({"loss": "1.5"})
    bar.close()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 6, lines  # start, 4 updates, end
    assert lines[0].startswith("train: 0/4 step [") and lines[-1].startswith("train: 4/4 step [")
    assert lines[-1].endswith(", loss=1.5]"), lines[-1]
    terminal = _Terminal()
    bar = progress(4, desc="train", file=terminal)
    bar.update(4)
    bar.close()
    assert not isinstance(bar, LineProgress) and "\r" in terminal.getvalue()


def test_lines_at_most_every_interval():
    log = io.StringIO()
    bar = progress(1000, desc="x", file=log, every_s=3600)
    for _ in range(1000):
        bar.update(1)
    bar.close()
    assert len(log.getvalue().splitlines()) == 2  # the start and the end only


def test_training_logger_writes_lines_to_a_log(tmp_path, capsys, monkeypatch):
    from t5x_sbs.trainer.metrics_logging import MetricsLogger

    monkeypatch.setenv("T5X_SBS_PROGRESS_SECONDS", "0")
    logger = MetricsLogger(str(tmp_path), flops_per_step=1.0, tokens_per_step=8, peak_flops_per_device=None,
                           total_steps=5, initial_step=2)
    for loss in (3.0, 2.5, 2.0):
        logger.advance(1, loss=loss)
    logger.close()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("train: ")]
    assert "\r" not in err and len(lines) == 5, err
    assert lines[0].startswith("train: 2/5 step") and lines[-1].startswith("train: 5/5 step")
    assert lines[-1].endswith("loss=2]"), lines[-1]


def test_teacher_progress_through_a_pipe(tmp_path):
    arith.write_splits(tmp_path / "data", seed=0, sizes={"train": 20, "validation": 2, "test": 2})
    argv = [sys.executable, "-m", "t5x_sbs.cli", "rationales", "--dataset", "arith", "--data_dir",
            str(tmp_path / "data"), "--split", "train", "--teacher", "scripted:arith",
            "--out", str(tmp_path / "store.jsonl")]
    env = {**os.environ, "T5X_SBS_PROGRESS_SECONDS": "0"}
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("scripted:arith")]
    assert len(lines) == 22, done.stderr  # start, 20 examples, end
    assert " arith: 0/20 ex [" in lines[0] and " arith: 20/20 ex [" in lines[-1], lines
    assert " arith: 7/20 ex [" in lines[7] and "ok=7," in lines[7], lines[7]

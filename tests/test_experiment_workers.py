"""experiments.workers: students in pinned worker processes (real spawned processes)."""
import logging
import os
import sys

import pytest

from t5x_sbs.experiments import workers


def where(item):
    """What a worker sees: its process, its cores, whether it knows it is a worker."""
    if item == "boom":
        raise ValueError("student boom failed")
    return os.getpid(), workers.cpu_cores(), workers._IN_WORKER


def log_into(path):
    logging.basicConfig()  # as a library may do in a worker: a root handler on the terminal
    with workers.student_log(path):
        logging.getLogger("t5x_sbs.trainer.train_loop").info("initialised from somewhere")
        print("train: 3/6 step", file=sys.stderr)
    return path


def test_core_shares_are_disjoint_slices():
    assert workers.core_shares(2, [0, 1]) == [{0}, {1}]
    assert workers.core_shares(2, [0, 1, 2, 3, 4]) == [{0, 1}, {2, 3}]  # the fifth core stays idle
    assert workers.core_shares(3, [4, 7]) == [{4, 7}] * 3  # more jobs than cores: no pinning


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_two_workers_run_every_item_in_other_processes_on_their_own_core():
    found = dict(workers.run_each(where, range(6), jobs=2))
    assert sorted(found) == list(range(6))
    pids = {pid for pid, _, _ in found.values()}
    assert os.getpid() not in pids and len(pids) <= 2
    assert all(in_worker for _, _, in_worker in found.values())
    by_pid = {pid: tuple(cores) for pid, cores, _ in found.values()}
    assert all(len(cores) == len(os.sched_getaffinity(0)) // 2 for cores in by_pid.values())
    if len(by_pid) == 2:
        first, second = by_pid.values()
        assert not set(first) & set(second)


def test_one_job_stays_in_this_process():
    found = dict(workers.run_each(where, ["a", "b"], jobs=1))
    assert found == {"a": (os.getpid(), workers.cpu_cores(), False), "b": (os.getpid(), workers.cpu_cores(), False)}


def test_a_failing_worker_raises_here():
    with pytest.raises(ValueError, match="student boom failed"):
        list(workers.run_each(where, ["boom", "a", "b", "c"], jobs=2))


def test_student_log_takes_progress_and_logs_in_a_worker_only(tmp_path, capfd):
    ((_, path),) = workers.run_each(log_into, [str(tmp_path / "w" / "train.log")], jobs=2)
    # one item runs in this process (nothing to overlap): nothing is redirected
    assert not os.path.exists(path) and "train: 3/6 step" in capfd.readouterr().err
    found = dict(workers.run_each(log_into, [str(tmp_path / n / "train.log") for n in ("a", "b")], jobs=2))
    for path in found:
        text = open(path, encoding="utf-8").read()
        assert "initialised from somewhere" in text and "train: 3/6 step" in text
    assert "initialised from" not in capfd.readouterr().err  # the workers printed none of it here

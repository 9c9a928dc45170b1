"""Students side by side: worker processes, each pinned to its share of the CPU cores.

A demo student (1.1M parameters) scales poorly over cores. `benchmarks/parallel_students.py` on
the 2-core machine (the demo student's step, batch 16 x (128 + 32)): one process on both cores
takes 131 ms a step; two workers pinned to one core each take 192 and 208 ms, 1.32x the steps per
second together. Unpinned, two processes took ~220 ms each (1.17x). Decoding and input work,
mostly single-threaded, overlap too. On an accelerator every process would claim the whole
device, so there `default_jobs` is 1 and students stay in this process, one at a time.

A worker process starts fresh (spawn): it imports the library, registers nothing and binds no
gin, so `fn` must set up what it needs (the demo's tasks, the compilation cache) itself.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import multiprocessing
import os
import sys
from typing import Callable, Iterable, Iterator, TypeVar

import jax  # importing starts no backend: a worker pins itself before its first computation

Item = TypeVar("Item")
Result = TypeVar("Result")
_IN_WORKER = False


def cpu_cores() -> list[int]:
    """The cores this process may run on (its affinity, not the machine's count)."""
    return sorted(os.sched_getaffinity(0))


def default_jobs() -> int:
    """One student per core on a CPU backend; one at a time on an accelerator."""
    return len(cpu_cores()) if jax.default_backend() == "cpu" else 1


def core_shares(jobs: int, cores: list[int]) -> list[set[int]]:
    """`jobs` disjoint, equal slices of `cores` (a spare core goes unused); with more jobs than
    cores every worker may use every core."""
    share = len(cores) // jobs
    if share == 0:
        return [set(cores)] * jobs
    return [set(cores[i * share:(i + 1) * share]) for i in range(jobs)]


def _start_worker(shares) -> None:
    """Pool initializer: pin this worker to the next free share before JAX starts its backend
    (XLA sizes its CPU thread pool from the affinity)."""
    global _IN_WORKER
    _IN_WORKER = True
    os.sched_setaffinity(0, shares.get())


def run_each(fn: Callable[[Item], Result], items: Iterable[Item], jobs: int) -> Iterator[tuple[Item, Result]]:
    """(item, fn(item)) for every item, in completion order: in this process when jobs <= 1,
    else in `jobs` pinned worker processes (fn and items must pickle). A worker's exception is
    raised here once the items already running finish; the queued ones are cancelled."""
    items = list(items)
    if jobs <= 1 or len(items) <= 1:
        yield from ((item, fn(item)) for item in items)
        return
    jobs = min(jobs, len(items))
    context = multiprocessing.get_context("spawn")  # a fork of a process running XLA threads is unsafe
    shares = context.Queue()
    for share in core_shares(jobs, cpu_cores()):
        shares.put(share)
    pool = concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker,
                                                  initargs=(shares,))
    try:
        futures = {pool.submit(fn, item): item for item in items}
        for future in concurrent.futures.as_completed(futures):
            yield futures[future], future.result()
    finally:
        pool.shutdown(cancel_futures=True)


@contextlib.contextmanager
def student_log(path: str):
    """In a worker: this student's progress lines (stderr) and `t5x_sbs` INFO logs go to `path`,
    so parallel students do not draw over each other's progress bars. In this process: nothing."""
    if not _IN_WORKER:
        yield
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    logger = logging.getLogger("t5x_sbs")
    with open(path, "a", encoding="utf-8") as stream, contextlib.redirect_stderr(stream):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
        level, propagate = logger.level, logger.propagate
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False  # a root handler (a library's basicConfig) would print them to the terminal too
        try:
            yield
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate
            sys.stderr.flush()

"""Train-loop steps/s with and without the prefetch thread (issue 15).

    python benchmarks/prefetch_throughput.py [--quick] [--steps 1000] [--repeats 3]

`train_loop.train` on real data (default svamp_sbs_llm, tiny T5) with RunConfig.prefetch_batches
= 2 (the default: the next host batches are built on a thread while a step runs) and = 0 (built
on the main thread between steps). Steps/s counts the steady state: the dispatch times of the
steps after the warm-up (first compile), up to the last; the run is then preempted by SIGTERM,
so no evaluation runs. The two settings alternate, a warm XLA compilation cache shared.
Last line: `ratio: steps/s with prefetch / without`.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import tempfile

import _loop_common as common

WARMUP = 5


def steps_per_second(args, model_dir: str, prefetch: int, steps: int) -> float:
    def stop_after_last(step: int) -> None:
        if step == steps:
            os.kill(os.getpid(), signal.SIGTERM)  # the loop saves this step and returns

    timer = common.StepTimer(after_step=stop_after_last)
    with common.timed_steps(timer):
        common.run_train(common.bindings(args, model_dir, steps + 1000, "EVAL_EVERY = 1000000",
                                         "CHECKPOINT_EVERY = 1000000", f"RunConfig.prefetch_batches = {prefetch}"))
    timed = timer.dispatched[WARMUP:]
    return (len(timed) - 1) / (timed[-1] - timed[0])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_run_args(p)
    p.add_argument("--steps", type=int, default=1000, help="steps per run (--quick: 300)")
    p.add_argument("--repeats", type=int, default=3, help="runs per setting (median; --quick: 1)")
    args = p.parse_args(argv)
    steps, repeats = (300, 1) if args.quick else (args.steps, args.repeats)
    common.quiet_logs()
    work = tempfile.mkdtemp(prefix="prefetch_")
    common.use_compilation_cache(os.path.join(work, "xla_cache"))
    base = os.path.join(work, "base")
    steps_per_second(args, base, 2, WARMUP + 2)  # the vocabulary and the compiled step, reused below
    rates: dict[int, list[float]] = {2: [], 0: []}
    for r in range(repeats):
        for prefetch in (2, 0) if r % 2 == 0 else (0, 2):
            model_dir = os.path.join(work, f"run_{prefetch}_{r}")
            os.makedirs(model_dir)
            shutil.copy(os.path.join(base, "spiece.model"), model_dir)  # the same vocabulary, a fresh run
            rates[prefetch].append(steps_per_second(args, model_dir, prefetch, steps))
    shutil.rmtree(work, ignore_errors=True)
    with_, without = statistics.median(rates[2]), statistics.median(rates[0])
    print(f"prefetch_throughput: {args.task}, tiny T5 (d_model 32), batch {args.batch}, "
          f"{args.inputs}+{args.targets} tokens, {steps} steps (first {WARMUP} not timed), median of {repeats}")
    print(f"  steps/s with the prefetch thread (prefetch_batches 2): {with_:.1f}")
    print(f"  steps/s without (prefetch_batches 0, batches built between steps): {without:.1f}")
    print(f"ratio: {with_ / without:.2f}   (with / without prefetch)")


if __name__ == "__main__":
    main()

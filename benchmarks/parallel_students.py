"""Students side by side (`t5x-sbs demo --jobs`): train steps per second of one process on every
core vs `--jobs` worker processes pinned to their share of the cores (experiments.workers).

    python benchmarks/parallel_students.py [--jobs 2] [--steps 40]

Each side times the real train step of the d128 demo student (configs/demo_student.gin, its 1,152-row
pretrained vocabulary, batch 16 x (128 + 32) tokens, random tokens: benchmarks/train_step.py);
the workers start together and each times its own steps, so they contend as students do.
Last line: `ratio: aggregate steps/s of the workers / steps/s of one process`.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # train_step, in this process and in workers
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import train_step  # noqa: E402

from t5x_sbs.experiments import workers  # noqa: E402

STUDENT = ["--gin_file=configs/demo_student.gin", "--batch=16", "--inputs=128", "--targets=32",
           "--gin=T5Config.vocab_size=1152"]


def seconds_per_step(steps: int, _worker: int) -> float:
    return train_step.measure(train_step.parse_args([*STUDENT, f"--steps={steps}"]))["seconds"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=len(workers.cpu_cores()))
    parser.add_argument("--steps", type=int, default=40, help="timed steps per process, after 2 warm-up steps")
    args = parser.parse_args(argv)
    if args.jobs < 2:
        raise SystemExit("--jobs must be at least 2 (one process is the baseline)")
    time_steps = functools.partial(seconds_per_step, args.steps)
    alone = time_steps(0)  # this process, every core (workers are spawned fresh: they inherit no JAX)
    side_by_side = dict(workers.run_each(time_steps, range(args.jobs), jobs=args.jobs))
    together = sum(1 / seconds for seconds in side_by_side.values())
    print(f"one process on cores {workers.cpu_cores()}: {alone * 1e3:.1f} ms/step = {1 / alone:.2f} steps/s")
    print(f"{args.jobs} pinned workers ({workers.core_shares(args.jobs, workers.cpu_cores())}): "
          + ", ".join(f"{s * 1e3:.1f}" for s in side_by_side.values()) + f" ms/step = {together:.2f} steps/s together")
    print(f"ratio: {together * alone:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

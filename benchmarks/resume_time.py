"""Time to the first step after a resume at step 100 vs step 10,000 (issue 15): the input
pipeline's state in the checkpoint is a stream position, so positioning is O(1) in the step.

    python benchmarks/resume_time.py [--quick]

A 1-step tiny-model run on real data (default svamp_sbs_llm) makes a checkpoint; for each N a
copy of it is re-saved as step N with the pipeline state an uninterrupted run has after N
batches. Then `train_loop.train` resumes it (restore, SeqIO read, pipeline positioning, first
step) and is preempted by SIGTERM after that step, through the loop's own save-and-exit path.
Times: from the call to the first step's loss being ready, with a warm XLA compilation cache
(as a restarted job with a persistent cache) and after one untimed resume, so what differs is
only the resume itself. Also
printed: the pipeline alone (positioning + first batch) and, for contrast, a count-only state
(checkpoints from before the index-based pipeline), which the loop replays batch by batch.
Last line: `ratio: t(10,000) / t(100)`; the goal is about 1.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import tempfile
import time

import _loop_common as common

EARLY, LATE = 100, 10_000
NO_EVAL = ("EVAL_EVERY = 1000000", "CHECKPOINT_EVERY = 1000000")


def _preempt_after_first_step(step: int) -> None:
    if step == 1:
        os.kill(os.getpid(), signal.SIGTERM)  # the loop saves this step and returns


def make_checkpoint(args, base_dir: str, model_dir: str, step: int, *, count_only: bool) -> dict:
    """`base_dir`'s checkpoint re-saved in `model_dir` as `step`, with the input state after `step`
    batches (returned)."""
    import jax.numpy as jnp

    from t5x_sbs import checkpoints
    from t5x_sbs.trainer import configs, input_pipeline, train_loop

    shutil.copytree(base_dir, model_dir)
    run_configs = configs.configs_from_gin(["gin/models/t5_1_1/tiny.gin", "gin/runs/sbs.gin"],
                                           common.bindings(args, model_dir, step + 1), search_paths=[common.REPO])
    run = run_configs.run
    _, _, trainer = train_loop.build(run_configs)
    train_loop.resolve_vocabulary(run)
    manager = checkpoints.CheckpointManager(model_dir)
    state, _ = manager.restore(trainer.abstract_state())
    state = state.replace(step=jnp.asarray(step, state.step.dtype))
    if count_only:
        data_state = {"batches_consumed": step}
    else:
        task = input_pipeline.training_task_name(run.mixture_or_task_name, run.loss_mode)
        batches = train_loop._train_batches(run, task, None)
        for _ in range(step):
            next(batches)
        data_state = batches.state()
    manager.save(step, state, data_state=data_state, force=True)
    manager.wait_until_finished()
    manager.close()
    return data_state


def time_resume(args, model_dir: str, step: int) -> float:
    """Seconds from `train_loop.train` to the first resumed step's loss."""
    timer = common.StepTimer(after_step=_preempt_after_first_step)
    start = time.perf_counter()
    with common.timed_steps(timer):
        out = common.run_train(common.bindings(args, model_dir, step + 1000, *NO_EVAL))
    assert out["step"] == step + 1, f"resumed at {out['step'] - 1}, not {step}"
    return timer.first_ready - start


def time_pipeline(args, states: dict[str, dict]) -> dict[str, float]:
    """Milliseconds to position the index-based pipeline at each state and build the first batch."""
    from t5x_sbs.trainer import input_pipeline

    lengths = {"inputs": args.inputs, "targets": args.targets}
    task = input_pipeline.training_task_name(args.task, "mixture")
    fresh = input_pipeline.train_batches(task, lengths, args.batch, pack=True, seed=0)
    out = {}
    for name, state in states.items():
        start = time.perf_counter()
        positioned = input_pipeline.TrainBatches(fresh.stream.rows, fresh.stream.rates, lengths, args.batch,
                                                 pack=True, seed=0, state=state)
        next(positioned)
        out[name] = 1000 * (time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(LATE):  # what a count-only state costs: replay every batch
        next(fresh)
    out["replay"] = 1000 * (time.perf_counter() - start)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_run_args(p)
    p.add_argument("--repeats", type=int, default=5, help="timed resumes per step, alternating (median); --quick: 3")
    args = p.parse_args(argv)
    repeats = 3 if args.quick else args.repeats
    common.quiet_logs()
    work = tempfile.mkdtemp(prefix="resume_time_")
    common.use_compilation_cache(os.path.join(work, "xla_cache"))
    base = os.path.join(work, "base")
    timer = common.StepTimer(after_step=_preempt_after_first_step)
    with common.timed_steps(timer):  # trains the vocabulary, compiles (fills the cache), saves step 1
        common.run_train(common.bindings(args, base, 1000, *NO_EVAL))

    cases = [("early", EARLY, False), ("late", LATE, False)] + ([] if args.quick else [("count_only", LATE, True)])
    times: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    states = {name: make_checkpoint(args, base, os.path.join(work, name), step, count_only=count_only)
              for name, step, count_only in cases}
    shutil.copytree(os.path.join(work, "early"), os.path.join(work, "warmup"))
    time_resume(args, os.path.join(work, "warmup"), EARLY)  # untimed: first-in-process costs (imports, tracing)
    for r in range(repeats):
        for name, step, _ in cases if r % 2 == 0 else cases[::-1]:
            run_dir = os.path.join(work, f"{name}_{r}")
            shutil.copytree(os.path.join(work, name), run_dir)
            times[name].append(time_resume(args, run_dir, step))
    pipeline = time_pipeline(args, {"early": states["early"], "late": states["late"]})
    median = {name: statistics.median(v) for name, v in times.items()}
    print(f"resume_time: {args.task}, tiny T5 (d_model 32), batch {args.batch}, {args.inputs}+{args.targets} "
          f"tokens, 1 CPU process, warm XLA cache, median of {repeats}")
    print(f"  time to first step after resume at step {EARLY}: {median['early']:.2f} s, "
          f"at step {LATE}: {median['late']:.2f} s")
    print(f"  input pipeline alone, positioning + first batch: step {EARLY}: {pipeline['early']:.1f} ms, "
          f"step {LATE}: {pipeline['late']:.1f} ms (replaying {LATE} batches instead: {pipeline['replay']:.0f} ms)")
    if "count_only" in median:
        print(f"  count-only input state (replayed) at step {LATE}: {median['count_only']:.2f} s")
    shutil.rmtree(work, ignore_errors=True)
    print(f"ratio: {median['late'] / median['early']:.2f}   (step {LATE} / step {EARLY}; goal about 1)")


if __name__ == "__main__":
    main()

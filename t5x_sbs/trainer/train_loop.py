"""The train run mode: build, restore or initialise, step, log, evaluate, checkpoint, stop cleanly.

`train(configs)` takes the run's typed configs (t5x_sbs.trainer.configs.TrainConfigs, read from
gin once by the entry point) and builds everything from them (t5x_sbs.trainer.builder).
"""
from __future__ import annotations

import functools
import json
import logging
import math
import os

import jax

from t5x_sbs import checkpoints
from t5x_sbs.checkpoints import initial_params, model_files
from t5x_sbs.trainer import evaluation, input_pipeline, length_buckets, preemption, shared_encoder
from t5x_sbs.trainer import prefetch as prefetch_lib
# Looked up in this module at call time: tests and benchmarks wrap train_loop.build.
from t5x_sbs.trainer.builder import build, resolve_vocabulary
from t5x_sbs.trainer.configs import RunConfig, TrainConfigs
from t5x_sbs.trainer.metrics_logging import MetricsLogger, flops_per_step

log = logging.getLogger(__name__)
TEST_RESULTS_FILE = "test_results.json"


class NonFiniteLossError(RuntimeError):
    pass


# ----------------------------------------------------------------------------- the loop
def _start_state(run, trainer, manager):
    """Resume from MODEL_DIR's latest complete checkpoint, else the initial checkpoint, else random.
    Returns (state, the input pipeline's state to continue from or None)."""
    if manager.latest_step() is not None:
        state, data_state = manager.restore(trainer.abstract_state())
        log.info("resumed from step %d of %s (input state %s)", int(state.step), run.model_dir, data_state)
        return state, data_state or {"batches_consumed": int(state.step)}
    if run.initial_checkpoint_path:
        params = initial_params.load_initial_params(run.initial_checkpoint_path, trainer.abstract_state().params,
                                                    model_config=trainer.model.config)
        log.info("initialised from %s", run.initial_checkpoint_path)
        return trainer.init_state(params), None
    return trainer.init_state(), None


def _train_batches(run: RunConfig, task: str, data_state: dict | None):
    """The training iterator, positioned after the batches a resumed run already consumed. An
    input state from before the index-based pipeline (only a batch count) is replayed."""
    legacy = data_state is not None and "version" not in data_state
    warning = run.length_bucket_window and length_buckets.layout_warning(run.loss_mode, task)
    if warning:
        log.warning(warning)
    make = shared_encoder.train_batches if run.loss_mode == shared_encoder.LOSS_MODE else input_pipeline.train_batches
    batches = make(task, run.task_feature_lengths, run.batch_size, pack=run.pack, seed=run.seed,
                   state=None if legacy else data_state, use_cached=run.use_cached,
                   bucket_window=run.length_bucket_window)
    if legacy:
        count = int(data_state["batches_consumed"])
        log.warning("checkpoint input state %s has no stream position: replaying %d batches", data_state, count)
        for _ in range(count):
            next(batches)
    return batches


class _Evaluator:
    """Validation during training: teacher-forced loss every EVAL_EVERY steps, decode metrics every
    INFER_EVAL_EVERY steps; keeps best/ by the validation metric (never by test)."""

    def __init__(self, run: RunConfig, trainer, part, manager, logger):
        self.run, self.trainer, self.part, self.manager, self.logger = run, trainer, part, manager, logger
        self.metric, self.mode = evaluation.selection_metric(run.mixture_or_task_name)
        self.validation = evaluation.SplitInputs(run.mixture_or_task_name, "validation", run.task_feature_lengths,
                                                 run.batch_size, run.eval_batches)
        kept = manager.best_step() is not None and checkpoints.read_json_item(
            os.path.join(run.model_dir, checkpoints.BEST_DIR, str(manager.best_step())), checkpoints.METRICS_ITEM)
        # A resumed run judges improvement against the kept best (its patience count restarts).
        self.best, self.evals_without_improvement = (kept or {}).get("value"), 0

    def due(self, step: int) -> bool:
        return step == self.run.train_steps or step % self.run.interval("eval") == 0 or self._decodes(step)

    def _decodes(self, step: int) -> bool:
        return step % self.run.interval("infer") == 0 or step == self.run.train_steps

    def maybe_evaluate(self, step: int, state) -> None:
        if not self.due(step):
            return
        decode = self._decodes(step)
        scores = evaluation.split_scores(self.trainer, self.part, state.params, self.validation, decode=decode)
        if not scores:
            return
        self.logger.write(step, scores, prefix="validation/")
        if self.metric in scores and (decode or self.mode == "min"):
            self.manager.save_best(step, state, scores[self.metric], mode=self.mode,
                                   metric_name=f"validation/{self.metric}")
            self._track(scores[self.metric])

    def _track(self, value: float) -> None:
        better = self.best is None or (value > self.best if self.mode == "max" else value < self.best)
        self.best = value if better else self.best
        self.evals_without_improvement = 0 if better else self.evals_without_improvement + 1

    def should_stop_early(self) -> bool:
        """Every process sees the same (global) metric, so all stop at the same step."""
        patience = self.run.early_stopping_patience
        if patience is not None and self.evals_without_improvement >= patience:
            log.info("early stopping: validation/%s did not improve on %s in %d evaluations", self.metric,
                     self.best, patience)
            return True
        return False

    def final_test(self) -> dict | None:
        """The best checkpoint on test; MODEL_DIR/test_results.json."""
        if self.manager.best_step() is None:
            log.warning("no best checkpoint (no validation split?): no test evaluation")
            return None
        best, _ = self.manager.restore_best(self.trainer.abstract_state())
        test = evaluation.SplitInputs(self.run.mixture_or_task_name, "test", self.run.task_feature_lengths,
                                      self.run.batch_size, self.run.test_batches)
        scores = evaluation.split_scores(self.trainer, self.part, best.params, test)
        if not scores:
            return None
        result = {"best_step": int(best.step), "selected_by": f"validation/{self.metric}",
                  "validation": checkpoints.read_json_item(
                      os.path.join(self.run.model_dir, checkpoints.BEST_DIR, str(int(best.step))),
                      checkpoints.METRICS_ITEM), "test": scores}
        self.logger.write(int(best.step), scores, prefix="test/")
        if jax.process_index() == 0:
            with open(os.path.join(self.run.model_dir, TEST_RESULTS_FILE), "w") as f:
                json.dump(result, f, indent=1)
        log.info("test (best step %d by validation/%s): %s", int(best.step), self.metric, scores)
        return result


def _check_finite(loss: float, step: int, manager, run: RunConfig, grad_norm: float | None = None) -> None:
    """Stops before a non-finite loss or gradient norm (whose update would poison the params) is
    saved; also surfaces a failed async checkpoint save at the step it is found."""
    manager.raise_if_save_failed()
    bad = [f"{name} is {value}" for name, value in (("loss", loss), ("gradient norm", grad_norm))
           if value is not None and not math.isfinite(value)]
    if bad:
        manager.wait_until_finished()
        raise NonFiniteLossError(
            f"{' and '.join(bad)} at step {step}: training stopped, this step not saved. Last good checkpoint: "
            f"step {manager.latest_step()} in {run.model_dir}")


class _LaggedMetrics:
    """Reads a step's metrics only after the next step is queued, so the host never waits for the
    device on an ordinary step; `flush` reads them at once (before a save, an evaluation, the end).
    The non-finite check thus runs at most one step late, and always before that step is saved."""

    def __init__(self, run: RunConfig, manager, logger):
        self.run, self.manager, self.logger = run, manager, logger
        self.pending, self.last = None, {}

    def push(self, step: int, metrics) -> None:
        self.flush()
        self.pending = (step, metrics)

    def flush(self) -> None:
        if self.pending is None:
            return
        step, metrics = self.pending
        self.pending = None
        loss = float(metrics["loss"])
        grad_norm = float(metrics["grad_norm"]) if "grad_norm" in metrics else None
        _check_finite(loss, step, self.manager, self.run, grad_norm)
        self.logger.advance(1, loss=loss)
        if step % self.run.log_every == 0 or step == self.run.train_steps:
            self.last = {**jax.tree.map(float, metrics), **self.logger.throughput(step)}
            self.logger.write(step, self.last)


def _count_bucketed_step(logger: MetricsLogger, run: RunConfig, step_flops, host_batch) -> None:
    """Length buckets: tokens/s and MFU count the step's own widths, not the feature lengths.
    `step_flops(input_width, target_width)`: flops_per_step of the run's params and batch size."""
    widths = host_batch["encoder_input_tokens"].shape[1], host_batch["decoder_target_tokens"].shape[1]
    logger.count_step(run.batch_size * sum(widths), step_flops(*widths))


def _needs_sync(run: RunConfig, evaluator: _Evaluator, step: int) -> bool:
    return step == run.train_steps or evaluator.due(step) or step % run.interval("checkpoint") == 0


def train(configs: TrainConfigs) -> dict:
    """Runs to TRAIN_STEPS, early stopping or a preemption; returns the last logged metrics."""
    run = configs.run
    os.makedirs(run.model_dir, exist_ok=True)
    model_config, part, trainer = build(configs)
    spm = resolve_vocabulary(run, model_config, train_if_missing=True)
    kept_vocab = os.path.join(run.model_dir, model_files.VOCAB_FILE)
    same = os.path.exists(kept_vocab) and os.path.samefile(spm, kept_vocab)
    if jax.process_index() == 0:
        model_files.save_model_config(run.model_dir, model_config, vocabulary=None if same else spm)
    task = input_pipeline.training_task_name(run.mixture_or_task_name, run.loss_mode)
    manager = checkpoints.CheckpointManager(run.model_dir, save_interval_steps=run.interval("checkpoint"),
                                            max_to_keep=run.keep_checkpoints)
    state, data_state = _start_state(run, trainer, manager)
    step = int(state.step)
    batches = _train_batches(run, task, data_state)
    lengths = run.task_feature_lengths
    # Counting params walks the whole tree: once per (input, target) width pair, not every step.
    step_flops = functools.lru_cache(maxsize=None)(
        functools.partial(flops_per_step, trainer.abstract_state().params, run.batch_size))
    logger = MetricsLogger(run.model_dir, tokens_per_step=run.batch_size * (lengths["inputs"] + lengths["targets"]),
                           flops_per_step=step_flops(lengths["inputs"], lengths["targets"]),
                           peak_flops_per_device=run.peak_flops_per_device, total_steps=run.train_steps, initial_step=step)
    evaluator = _Evaluator(run, trainer, part, manager, logger)
    lagged, finished = _LaggedMetrics(run, manager, logger), step >= run.train_steps
    # The next host batches are built on a thread while the current step runs; every JAX call
    # (placing them on the devices included) stays on the main thread.
    produce = lambda: (next(batches), batches.state())  # noqa: E731
    prefetch = prefetch_lib.Prefetcher(produce, run.prefetch_batches) if run.prefetch_batches else None
    stop_before_test = False
    try:
        with preemption.PreemptionGuard() as guard, part.activation_context():
            while step < run.train_steps:
                host_batch, data_state = next(prefetch) if prefetch else produce()
                state, metrics = trainer.train_step(state, part.global_batch(host_batch), trainer.base_rng)
                step += 1
                if run.length_bucket_window:
                    _count_bucketed_step(logger, run, step_flops, host_batch)
                lagged.push(step, metrics)
                preempted = guard.should_stop(step)
                if not (preempted or _needs_sync(run, evaluator, step)):
                    continue
                lagged.flush()  # before anything reads or saves this step's state
                evaluator.maybe_evaluate(step, state)
                finished = step >= run.train_steps or evaluator.should_stop_early()
                manager.save(step, state, data_state=data_state, force=finished or preempted)
                if preempted and not finished:
                    log.warning("preempted: saved step %d, exiting", step)
                if finished or preempted:
                    break
            lagged.flush()
            # Still guarded: Orbax commits the last save, then deletes the steps beyond keep, on
            # its finalize thread; a SIGTERM killing the process between the two left keep + 1.
            manager.wait_until_finished()
            stop_before_test = finished and guard.should_stop(step)
    finally:
        if prefetch:
            prefetch.close()
    if stop_before_test:  # everything is saved; a rerun resumes at the end and runs only the test
        log.warning("preempted: step %d saved, final test skipped (a rerun runs it)", step)
    elif finished:
        evaluator.final_test()
    manager.close()
    logger.close()
    return {"step": step, **lagged.last}

"""The train run mode: build, restore or initialise, step, log, evaluate, checkpoint, stop cleanly.

Gin wires `RunConfig` (T5X macro names in gin/runs/*.gin); everything else is built from it.
Without a SentencePiece model (SPM_PATH None) the run trains one on the task's training texts and
keeps it as MODEL_DIR/spiece.model, which a resumed run (and eval/infer) reuses.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os

import gin
import jax

from t5x_sbs import checkpoints
from t5x_sbs.checkpoints import model_files
from t5x_sbs.trainer import evaluation
from t5x_sbs.checkpoints import initial_params
from t5x_sbs.trainer import input_pipeline, optimizers, partitioning, preemption, shared_encoder
from t5x_sbs.trainer import train_step as trainer_lib
from t5x_sbs.trainer.metrics_logging import MetricsLogger, flops_per_step
from t5x_sbs.models.config import T5Config
from t5x_sbs.models.t5 import Transformer

log = logging.getLogger(__name__)
TEST_RESULTS_FILE = "test_results.json"


class NonFiniteLossError(RuntimeError):
    pass


@gin.configurable
@dataclasses.dataclass(frozen=True)
class RunConfig:
    model_dir: str = gin.REQUIRED
    mixture_or_task_name: str = gin.REQUIRED
    task_feature_lengths: dict = dataclasses.field(default_factory=lambda: {"inputs": 256, "targets": 256})
    train_steps: int = 1000
    batch_size: int = 64
    loss_mode: str = "mixture"  # paired | mixture | shared_encoder (one encoder pass for both targets)
    pack: bool = True
    initial_checkpoint_path: str | None = None
    seed: int = 0
    num_microbatches: int = 1
    log_every: int = 10
    eval_every: int | None = None  # teacher-forced validation loss; None: about 4 times a run
    infer_eval_every: int | None = None  # decode + metrics on validation; None: = eval_every
    eval_batches: int = 8
    test_batches: int | None = None  # final test on the best checkpoint: None = the whole split
    checkpoint_every: int | None = None  # None: = eval_every
    keep_checkpoints: int = 3
    peak_flops_per_device: float | None = None
    auto_vocab_size: int = 512  # SentencePiece size trained when no SPM_PATH is given
    # Stop after this many in-training inference evaluations without a better validation metric.
    early_stopping_patience: int | None = None
    use_cached: bool = False  # read the tasks' SeqIO cache (seqio cache_tasks_main) for training
    prefetch_batches: int = 2  # host batches built ahead on a thread; 0: on the main thread (benchmarks)

    def __post_init__(self):
        """Bad numbers fail when the config is built, before any work (names the gin macro)."""
        checks = (("train_steps", "TRAIN_STEPS", 1), ("batch_size", "BATCH_SIZE", 1), ("num_microbatches", None, 1),
                  ("log_every", None, 1), ("eval_batches", None, 1), ("keep_checkpoints", None, 1),
                  ("eval_every", "EVAL_EVERY", 1), ("infer_eval_every", None, 1), ("checkpoint_every", None, 1),
                  ("test_batches", None, 1), ("prefetch_batches", None, 0))
        for field, macro, least in checks:
            value = getattr(self, field)
            if value is None and field not in ("train_steps", "batch_size", "num_microbatches", "log_every"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                where = f"RunConfig.{field}" + (f" (gin {macro})" if macro else "")
                raise ValueError(f"{where} must be an integer >= {least}, got {value!r}")

    def interval(self, name: str) -> int:
        """EVAL/INFER/CHECKPOINT intervals, defaulting to a quarter of the run (at most 1000)."""
        auto = max(1, min(1000, -(-self.train_steps // 4)))
        value = {"eval": self.eval_every, "infer": self.infer_eval_every or self.eval_every,
                 "checkpoint": self.checkpoint_every or self.eval_every}[name]
        return int(value or auto)


def build(run: RunConfig, model_config: T5Config | None = None, mesh_config=None, optimizer_config=None,
          loss_config=None):
    """(model config, partitioner, Trainer) for a run; gin supplies what is not given."""
    model_config = model_config or T5Config.from_gin()
    optimizer_config = optimizer_config or optimizers.OptimizerConfig()
    part = partitioning.Partitioner(partitioning.make_mesh(mesh_config or partitioning.MeshConfig()))
    part.check_batch_size(run.batch_size)
    lengths = run.task_feature_lengths
    shapes = {k: (run.batch_size, lengths["inputs"] if k.startswith("encoder") else lengths["targets"])
              for k in _batch_keys(run)}
    # The Trainer completes make_optimizer with the params' logical axes (Adafactor factors by them).
    make_tx = functools.partial(optimizers.make_optimizer, optimizer_config, run.train_steps)
    trainer = trainer_lib.Trainer(
        Transformer(model_config), make_tx, part, shapes,
        loss_config=loss_config or trainer_lib.LossConfig(), schedule=optimizers.make_schedule(optimizer_config, run.train_steps),
        num_microbatches=run.num_microbatches, seed=run.seed)
    return model_config, part, trainer


def _batch_keys(run: RunConfig) -> list[str]:
    if run.loss_mode == shared_encoder.LOSS_MODE:
        return list(shared_encoder.BATCH_KEYS)
    keys = ["encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens", "decoder_loss_weights",
            "decoder_task_ids"]
    if run.pack:
        keys += ["encoder_segment_ids", "decoder_segment_ids", "encoder_positions", "decoder_positions"]
    return keys


# ----------------------------------------------------------------------------- vocabulary
def _training_texts(task_name: str) -> list[str]:
    """Every string field of the raw (untokenized) train rows of a task or mixture's tasks."""
    import seqio

    provider = seqio.get_mixture_or_task(task_name)
    texts = []
    for task in getattr(provider, "tasks", [provider]):
        for row in task.source.get_dataset(split="train", shuffle=False).as_numpy_iterator():
            texts += [v.decode("utf-8") for v in row.values() if isinstance(v, bytes)]
    return texts


def resolve_vocabulary(run: RunConfig, model_config: T5Config | None = None, *, checkpoints_dir: str | None = None,
                       train_if_missing: bool = False) -> str:
    """The SentencePiece model of a run: SPM_PATH when bound, else MODEL_DIR/spiece.model (a resumed
    run, or `checkpoints_dir` for eval/infer), else (training) one trained on the task's train texts.
    Binds it for the tasks and checks it fits the model's embedding."""
    from t5x_sbs.tasks import config as task_config
    from t5x_sbs.data import vocab as vocab_lib

    try:
        path = task_config.vocabulary_path()
    except ValueError:
        path = None
    kept = os.path.join(checkpoints_dir or run.model_dir, model_files.VOCAB_FILE)
    initial = vocab_lib.initial_checkpoint_vocabulary(run.initial_checkpoint_path)  # issue 12
    if path is None and os.path.isfile(kept):
        path = kept
        log.info("vocabulary: %s (kept by the run)", path)
    elif path is None and initial:  # a (pre)trained initial checkpoint's own vocabulary
        path = initial
        log.info("vocabulary: %s (the initial checkpoint's)", path)
    elif path is None and train_if_missing:
        path = os.path.join(run.model_dir, model_files.VOCAB_FILE)
        rows = model_config.vocab_size - task_config.vocabulary_extra_ids() if model_config else run.auto_vocab_size
        size = min(run.auto_vocab_size, rows)  # the sentinels (extra ids) need rows too
        task = input_pipeline.training_task_name(run.mixture_or_task_name, run.loss_mode)
        _primary_then_others(lambda: vocab_lib.train_sentencepiece(_training_texts(task), path, size))
        log.info("no SPM_PATH: trained a %d-piece SentencePiece vocabulary on %s train texts -> %s",
                 size, task, path)
    elif path is None:
        raise ValueError(f"no vocabulary: SPM_PATH is not set and {kept} does not exist")
    gin.bind_parameter("tasks.config.vocabulary_path.path", path)
    if model_config is not None:
        _check_vocab_size(path, model_config)
    return path


def _primary_then_others(fn) -> None:
    """Runs `fn` on process 0 (it writes into the shared MODEL_DIR); the others wait for it."""
    if jax.process_index() == 0:
        fn()
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("t5x_sbs vocabulary")


def _check_vocab_size(path: str, model_config: T5Config) -> None:
    import seqio

    from t5x_sbs.tasks import config as task_config

    size = seqio.SentencePieceVocabulary(path, extra_ids=task_config.vocabulary_extra_ids()).vocab_size  # + sentinels
    if size > model_config.vocab_size:
        raise ValueError(f"vocabulary {path} has {size} pieces, more than T5Config.vocab_size="
                         f"{model_config.vocab_size} (the embedding): bind T5Config.vocab_size >= {size}")
    if size < model_config.vocab_size:
        log.info("vocabulary %s: %d pieces, embedding %d rows (unused rows are fine)", path, size,
                 model_config.vocab_size)


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
    make = shared_encoder.train_batches if run.loss_mode == shared_encoder.LOSS_MODE else input_pipeline.train_batches
    batches = make(task, run.task_feature_lengths, run.batch_size, pack=run.pack, seed=run.seed,
                   state=None if legacy else data_state, use_cached=run.use_cached)
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
        kept = manager.best_step() is not None and checkpoints.read_json_item(
            os.path.join(run.model_dir, checkpoints.BEST_DIR, str(manager.best_step())), checkpoints.METRICS_ITEM)
        # A resumed run judges improvement against the kept best (its patience count restarts).
        self.best, self.evals_without_improvement = (kept or {}).get("value"), 0

    def due(self, step: int) -> bool:
        return step == self.run.train_steps or step % self.run.interval("eval") == 0 or self._decodes(step)

    def _decodes(self, step: int) -> bool:
        return step % self.run.interval("infer") == 0 or step == self.run.train_steps

    def maybe_evaluate(self, step: int, state) -> None:
        run = self.run
        decode = self._decodes(step)
        if not self.due(step):
            return
        scores = evaluation.split_scores(self.trainer, self.part, state.params, run.mixture_or_task_name,
                                         "validation", run.task_feature_lengths, run.batch_size,
                                         max_batches=run.eval_batches, decode=decode)
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
        scores = evaluation.split_scores(self.trainer, self.part, best.params, self.run.mixture_or_task_name,
                                         "test", self.run.task_feature_lengths, self.run.batch_size,
                                         max_batches=self.run.test_batches)
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


def _needs_sync(run: RunConfig, evaluator: _Evaluator, step: int) -> bool:
    return step == run.train_steps or evaluator.due(step) or step % run.interval("checkpoint") == 0


def train(run: RunConfig, **build_overrides) -> dict:
    """Runs to TRAIN_STEPS, early stopping or a preemption; returns the last logged metrics."""
    os.makedirs(run.model_dir, exist_ok=True)
    model_config, part, trainer = build(run, **build_overrides)
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
    logger = MetricsLogger(run.model_dir, tokens_per_step=run.batch_size * (lengths["inputs"] + lengths["targets"]),
                           flops_per_step=flops_per_step(trainer.abstract_state().params, run.batch_size,
                                                         lengths["inputs"], lengths["targets"]),
                           peak_flops_per_device=run.peak_flops_per_device, total_steps=run.train_steps, initial_step=step)
    evaluator = _Evaluator(run, trainer, part, manager, logger)
    lagged, finished = _LaggedMetrics(run, manager, logger), step >= run.train_steps
    # The next host batches are built on a thread while the current step runs; every JAX call
    # (placing them on the devices included) stays on the main thread.
    produce = lambda: (next(batches), batches.state())  # noqa: E731
    prefetch = input_pipeline.Prefetcher(produce, run.prefetch_batches) if run.prefetch_batches else None
    stop_before_test = False
    try:
        with preemption.PreemptionGuard() as guard, part.activation_context():
            while step < run.train_steps:
                host_batch, data_state = next(prefetch) if prefetch else produce()
                state, metrics = trainer.train_step(state, part.global_batch(host_batch), trainer.base_rng)
                step += 1
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

"""What train, eval, infer and precompile all build from a run's typed configs: the partitioner
and Trainer (`build`), and the run's SentencePiece vocabulary (`resolve_vocabulary`).

Its own module so that the loop (train_loop) and the eval / infer run modes (evaluation) share it
without importing each other. Without a SentencePiece model (SPM_PATH None) a training run trains
one on the task's training texts and keeps it as MODEL_DIR/spiece.model, which a resumed run (and
eval/infer) reuses.
"""
from __future__ import annotations

import functools
import logging
import os

import jax
import seqio
from jax.experimental import multihost_utils

from t5x_sbs.checkpoints import model_files
from t5x_sbs.data import vocab as vocab_lib
from t5x_sbs.models.config import T5Config
from t5x_sbs.models.t5 import Transformer
from t5x_sbs.tasks import config as task_config
from t5x_sbs.trainer import input_pipeline, optimizers, partitioning, shared_encoder
from t5x_sbs.trainer import train_step as trainer_lib
from t5x_sbs.trainer.configs import RunConfig, TrainConfigs

log = logging.getLogger(__name__)


def build(configs: TrainConfigs):
    """(model config, partitioner, Trainer) of a run, from its typed configs only."""
    run, optimizer_config = configs.run, configs.optimizer
    part = partitioning.Partitioner(partitioning.make_mesh(configs.mesh))
    part.check_batch_size(run.batch_size)
    lengths = run.task_feature_lengths
    shapes = {k: (run.batch_size, lengths["inputs"] if k.startswith("encoder") else lengths["targets"])
              for k in batch_keys(run)}
    # The Trainer completes make_optimizer with the params' logical axes (Adafactor factors by them).
    make_tx = functools.partial(optimizers.make_optimizer, optimizer_config, run.train_steps)
    trainer = trainer_lib.Trainer(
        Transformer(configs.model), make_tx, part, shapes, loss_config=configs.loss,
        schedule=optimizers.make_schedule(optimizer_config, run.train_steps),
        num_microbatches=run.num_microbatches, seed=run.seed)
    return configs.model, part, trainer


def batch_keys(run: RunConfig) -> list[str]:
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
    Hands it to the tasks and checks it fits the model's embedding."""
    try:
        path = task_config.vocabulary_path()
    except ValueError:
        path = None
    kept = os.path.join(checkpoints_dir or run.model_dir, model_files.VOCAB_FILE)
    initial = model_files.initial_checkpoint_vocabulary(run.initial_checkpoint_path)  # issue 12
    if path is None and os.path.isfile(kept):
        path = kept
        log.info("vocabulary: %s (kept by the run)", path)
    elif path is None and initial:  # a (pre)trained initial checkpoint's own vocabulary
        path = initial
        log.info("vocabulary: %s (the initial checkpoint's)", path)
    elif path is None and train_if_missing:
        path = _train_vocabulary(run, model_config)
    elif path is None:
        raise ValueError(f"no vocabulary: SPM_PATH is not set and {kept} does not exist")
    task_config.use_vocabulary(path)
    if model_config is not None:
        _check_vocab_size(path, model_config)
    return path


def _train_vocabulary(run: RunConfig, model_config: T5Config | None) -> str:
    path = os.path.join(run.model_dir, model_files.VOCAB_FILE)
    rows = model_config.vocab_size - task_config.vocabulary_extra_ids() if model_config else run.auto_vocab_size
    size = min(run.auto_vocab_size, rows)  # the sentinels (extra ids) need rows too
    task = input_pipeline.training_task_name(run.mixture_or_task_name, run.loss_mode)
    _primary_then_others(lambda: vocab_lib.train_sentencepiece(_training_texts(task), path, size))
    log.info("no SPM_PATH: trained a %d-piece SentencePiece vocabulary on %s train texts -> %s", size, task, path)
    return path


def _primary_then_others(fn) -> None:
    """Runs `fn` on process 0 (it writes into the shared MODEL_DIR); the others wait for it."""
    if jax.process_index() == 0:
        fn()
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("t5x_sbs vocabulary")


def _check_vocab_size(path: str, model_config: T5Config) -> None:
    size = seqio.SentencePieceVocabulary(path, extra_ids=task_config.vocabulary_extra_ids()).vocab_size  # + sentinels
    if size > model_config.vocab_size:
        raise ValueError(f"vocabulary {path} has {size} pieces, more than T5Config.vocab_size="
                         f"{model_config.vocab_size} (the embedding): bind T5Config.vocab_size >= {size}")
    if size < model_config.vocab_size:
        log.info("vocabulary %s: %d pieces, embedding %d rows (unused rows are fine)", path, size,
                 model_config.vocab_size)

"""Train one cell through the trainer and score it the way the paper does.

A cell = one trainer run (t5x_sbs.trainer.train_loop) in its own MODEL_DIR; rerunning resumes from
its checkpoints. Its typed configs (t5x_sbs.trainer.configs.TrainConfigs) are built here in Python
from the TrainSpec and the cell recipe below (the architecture from the model's gin file), then
passed to `train_loop.train`. gin holds only the data edge: the tasks' data settings (data dir,
vocabulary, fraction, teacher files), read lazily while datasets are built, and the spec's
free-form `bindings` (a sweep's `gin_bindings`), which override the built configs' fields.
gin/runs/demo.gin spells the same recipe for `python -m t5x_sbs.main` (a test keeps the two equal).
Scores are the trainer's own (t5x_sbs.trainer.evaluation): greedy answers from the label prefix alone
(no rationale), scored with the task's seqio metric; the best checkpoint is kept by validation
accuracy and test is evaluated at it (MODEL_DIR/test_results.json).
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import os
import time

import jax
import sentencepiece as spm
from jax.experimental.compilation_cache import compilation_cache

from t5x_sbs import checkpoints
from t5x_sbs.experiments import preparation
from t5x_sbs.experiments.tables import METHODS
from t5x_sbs.models.info import param_count
from t5x_sbs.names import mixture_name
from t5x_sbs.trainer import configs, evaluation, train_loop
from t5x_sbs.trainer.optimizers import OptimizerConfig
from t5x_sbs.trainer.partitioning import MeshConfig
from t5x_sbs.trainer.train_step import LossConfig

# The cell recipe besides the spec (gin/runs/demo.gin has the same for the command line):
# whole validation/test splits of the demo sizes, one kept checkpoint (best/ is kept apart),
# Adafactor as T5X at a constant rate after a short warmup.
CELL_RUN = {"pack": True, "log_every": 25, "eval_batches": 64, "keep_checkpoints": 1}
CELL_OPTIMIZER = {"name": "adafactor", "warmup_steps": 20}
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainSpec:
    """Everything one trainer run needs; becomes gin bindings (T5X macro names)."""

    model_dir: str
    mixture: str                       # e.g. arith_sbs_llm (names.mixture_name)
    model_gin: str                     # gin/models/... file of the architecture
    spm_path: str                      # SentencePiece model of the task
    data_dir: str = ""
    train_steps: int = 300
    batch_size: int = 16
    feature_lengths: tuple[tuple[str, int], ...] = (("inputs", 128), ("targets", 64))
    rationale_weight: float = 1.0
    fraction: float = 1.0
    seed: int = 0
    eval_every: int = 100
    learning_rate: float = 1e-3
    loss_mode: str = "mixture"
    initial_checkpoint: str = ""
    vocab_size: int | None = None      # None: from the SentencePiece model, padded to 128
    early_stopping_patience: int | None = None  # decode evaluations without a better validation metric
    length_bucket_window: int = 0      # RunConfig.length_bucket_window (0: packed rows)
    dropout_rate: float | None = None  # None: the model gin's
    bindings: tuple[str, ...] = ()

    @property
    def lengths(self) -> dict[str, int]:
        return dict(self.feature_lengths)


def enable_compilation_cache(directory: str) -> None:
    """JAX's persistent compilation cache: students of one demo/sweep share model and shapes, so
    only the first compiles its steps (also across reruns). Safe to call after JAX started."""
    jax.config.update("jax_compilation_cache_dir", os.path.abspath(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    compilation_cache.reset_cache()  # re-read the settings even if something compiled before


def padded_vocab_size(spm_path: str, multiple: int = 128) -> int:
    """SentencePiece size rounded up to a multiple: a from-scratch student's embedding rows (an
    initial checkpoint's rows come from its config: model_files.initial_checkpoint_vocab_rows)."""
    size = spm.SentencePieceProcessor(model_file=spm_path).get_piece_size()
    return -(-size // multiple) * multiple


def data_bindings(spec: TrainSpec) -> list[str]:
    """The tasks' data settings of the cell (gin, the data edge), then the spec's own bindings."""
    out = [f"tasks.config.vocabulary_path.path = {json.dumps(spec.spm_path)}",
           f"tasks.config.data_options.fraction = {spec.fraction}"]
    if spec.data_dir:
        out.append(f"tasks.config.data_dir.path = {json.dumps(spec.data_dir)}")
    return out + list(spec.bindings)


def built_configs(spec: TrainSpec) -> configs.TrainConfigs:
    """The cell's typed configs from the spec and the recipe alone (no gin but the model file)."""
    model = configs.model_config_from_gin([spec.model_gin], [])
    if spec.dropout_rate is not None:
        model = model.replace(dropout_rate=spec.dropout_rate)
    run = configs.RunConfig(
        model_dir=spec.model_dir, mixture_or_task_name=spec.mixture, task_feature_lengths=spec.lengths,
        train_steps=spec.train_steps, batch_size=spec.batch_size, loss_mode=spec.loss_mode, seed=spec.seed,
        initial_checkpoint_path=spec.initial_checkpoint or None, eval_every=spec.eval_every,
        checkpoint_every=spec.eval_every, early_stopping_patience=spec.early_stopping_patience,
        length_bucket_window=spec.length_bucket_window, **CELL_RUN)
    return configs.TrainConfigs(
        run=run, model=model.replace(vocab_size=spec.vocab_size or padded_vocab_size(spec.spm_path)),
        optimizer=OptimizerConfig(learning_rate=spec.learning_rate, **CELL_OPTIMIZER), mesh=MeshConfig(),
        loss=LossConfig(rationale_weight=spec.rationale_weight))


def train_configs(spec: TrainSpec) -> configs.TrainConfigs:
    """The cell's typed configs with its `bindings` on top; leaves the data edge bound in gin for
    the run (the tasks read it while datasets are built)."""
    built = built_configs(spec)
    configs.bind_data_edge(data_bindings(spec))
    return configs.with_gin_overrides(built)


def train(spec: TrainSpec) -> dict:
    """Runs (or resumes) the trainer in this process on the spec's typed configs."""
    return train_loop.train(train_configs(spec))


def test_correctness(spec: TrainSpec) -> list[float]:
    """Per test question (split order), 1.0 if the validation-selected checkpoint answers it
    right from the label prefix, else 0.0: the trainer's `infer` run mode, scored one question
    at a time by the task's own seqio metric. For paired tests across methods and seeds."""
    path = os.path.join(spec.model_dir, "predictions_test.jsonl")
    infer_config = configs.EvalConfig(split="test", output_path=path)
    with configs.gin_scope():
        with contextlib.redirect_stdout(io.StringIO()):
            evaluation.run_mode("infer", train_configs(spec), infer_config)
        task = evaluation.label_task_name(spec.mixture)
        metric, _ = evaluation.selection_metric(spec.mixture)
        with open(path, encoding="utf-8") as f:
            predictions = [json.loads(line) for line in f]
    return [float(evaluation.decode_metrics(task, [p])[metric]) for p in predictions]


def train_and_score(spec: TrainSpec) -> dict:
    """Trains (or resumes) one cell, then its validation-selected scores, per-question test
    correctness (for paired tests) and what the run did: the part of a result row every
    experiment shares."""
    start = time.time()
    run_configs = train_configs(spec)  # built once: trained on, and its dropout recorded
    final = train_loop.train(run_configs)
    return {**score(spec.model_dir), "test_correct": test_correctness(spec), "train_steps": spec.train_steps,
            "patience": spec.early_stopping_patience, "length_bucket_window": spec.length_bucket_window,
            "loss_mode": spec.loss_mode, "learning_rate": spec.learning_rate,
            "dropout_rate": run_configs.model.dropout_rate, "steps_run": final.get("step"), "final_loss": final.get("loss"),
            "wall_s": round(time.time() - start, 1), "model_dir": spec.model_dir}


def best_step_dir(model_dir: str) -> str:
    """The checkpoint the trainer kept as best on validation (else its latest)."""
    best = os.path.join(model_dir, checkpoints.BEST_DIR)
    return str(checkpoints.resolve_step_dir(best if checkpoints.complete_steps(best) else model_dir))


def score(model_dir: str) -> dict:
    """Validation-selected scores the trainer wrote (MODEL_DIR/test_results.json): the best
    checkpoint by validation accuracy (decoded from the label prefix), then test at it."""
    path = os.path.join(model_dir, "test_results.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} missing: the run did not finish or had no validation/test split")
    with open(path, encoding="utf-8") as f:
        results = json.load(f)
    validation, test = results.get("validation", {}), results.get("test", {})
    if "accuracy" not in str(validation.get("name", "")) or "accuracy" not in test:
        raise ValueError(f"{path}: no decoded accuracy (selected by {results.get('selected_by')!r}; "
                         f"test keys {sorted(test)})")
    return {"val_accuracy": float(validation["value"]), "test_accuracy": float(test["accuracy"]),
            "best_step": int(results["best_step"]), "test_label_loss": test.get("label_loss")}


# --- sweeps ------------------------------------------------------------------------------

def prepare(config) -> tuple[str, str, tuple[str, ...]]:
    """Data, teacher store and vocabulary of a sweep, made once under out_dir (the demo's steps
    1-3a, t5x_sbs.experiments.preparation); returns (data_dir, spm_path, gin bindings for the tasks)."""
    settings = preparation.DataSettings(
        out_dir=config.out_dir, dataset=config.dataset, data_dir=config.data_dir or "", teacher=config.teacher, seed=0,
        train_size=config.train_size, eval_size=config.eval_size, vocab_size=config.vocab_size,
        spm_path=config.spm_path or "")
    return preparation.prepare_shared(settings)


_PREPARED: dict[str, tuple] = {}


def sweep_cell(config, cell, cell_dir: str) -> dict:
    """One sweep cell: train (or resume) in cell_dir, score from the label prefix."""
    if config.out_dir not in _PREPARED:
        enable_compilation_cache(os.path.join(config.out_dir, "jax_cache"))
        _PREPARED[config.out_dir] = prepare(config)
    data_dir, spm_path, bindings = _PREPARED[config.out_dir]
    spec = TrainSpec(
        model_dir=os.path.join(cell_dir, "model"), mixture=mixture_name(config.dataset, *METHODS[cell.method]),
        model_gin=config.model_gin(cell.size), spm_path=spm_path,
        data_dir=data_dir if config.dataset != "arith" else "", train_steps=config.train_steps,
        batch_size=config.batch_size, feature_lengths=tuple(config.feature_lengths.items()),
        # standard mixtures have no rationale tokens, so λ is moot there; the sweep's first λ keeps
        # the compiled step identical across methods (one compilation, cached)
        rationale_weight=cell.rationale_weight or config.rationale_weights[0], fraction=cell.fraction, seed=cell.seed,
        eval_every=config.eval_every, learning_rate=config.learning_rate, loss_mode=config.loss_mode,
        initial_checkpoint=config.initial_checkpoints.get(cell.size, ""), bindings=bindings + tuple(config.gin_bindings))
    train(spec)
    return score(spec.model_dir)


def size_params(config) -> dict[str, int] | None:
    """Parameter count per size (eval_shape only), for the accuracy-vs-size figure."""
    # the cells' embedding rows: the sweep's SentencePiece size padded as in built_configs()
    spm_path = config.spm_path or os.path.join(config.out_dir, "vocab", "spm.model")
    vocab = padded_vocab_size(spm_path) if os.path.exists(spm_path) else config.vocab_size
    counts = {}
    for size in config.sizes:
        model_config = configs.model_config_from_gin(
            [config.model_gin(size)], [f"T5Config.vocab_size = {vocab}", *config.gin_bindings])
        counts[size] = param_count(model_config)
    return counts

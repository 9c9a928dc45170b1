"""Train one cell through the trainer and score it the way the paper does.

A cell = one trainer run (t5x_sbs.trainer.train_loop, configured by gin: the model file, gin/runs/
demo.gin and the bindings below) in its own MODEL_DIR; rerunning resumes from its checkpoints.
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

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN_GIN = os.path.join(REPO, "gin", "runs", "demo.gin")
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
    bindings: tuple[str, ...] = ()

    @property
    def lengths(self) -> dict[str, int]:
        return dict(self.feature_lengths)


def enable_compilation_cache(directory: str) -> None:
    """JAX's persistent compilation cache: students of one demo/sweep share model and shapes, so
    only the first compiles its steps (also across reruns). Safe to call after JAX started."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    jax.config.update("jax_compilation_cache_dir", os.path.abspath(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    compilation_cache.reset_cache()  # re-read the settings even if something compiled before


def padded_vocab_size(spm_path: str, multiple: int = 128) -> int:
    """SentencePiece size rounded up to a multiple (T5: 32100 pieces -> 32128 rows)."""
    import sentencepiece as spm

    size = spm.SentencePieceProcessor(model_file=spm_path).get_piece_size()
    return -(-size // multiple) * multiple


def gin_bindings(spec: TrainSpec) -> list[str]:
    vocab = spec.vocab_size or padded_vocab_size(spec.spm_path)
    out = [
        f"MODEL_DIR = {json.dumps(spec.model_dir)}",
        f"MIXTURE_OR_TASK_NAME = {json.dumps(spec.mixture)}",
        f"TASK_FEATURE_LENGTHS = {json.dumps(spec.lengths)}",
        f"TRAIN_STEPS = {spec.train_steps}",
        f"BATCH_SIZE = {spec.batch_size}",
        f"RATIONALE_WEIGHT = {spec.rationale_weight}",
        f"LOSS_MODE = {json.dumps(spec.loss_mode)}",
        f"SPM_PATH = {json.dumps(spec.spm_path)}",
        f"DATA_FRACTION = {spec.fraction}",
        f"SEED = {spec.seed}",
        f"EVAL_EVERY = {spec.eval_every}",
        f"LEARNING_RATE = {spec.learning_rate}",
        f"T5Config.vocab_size = {vocab}",
        f"INITIAL_CHECKPOINT_PATH = {json.dumps(spec.initial_checkpoint) if spec.initial_checkpoint else None}",
        f"EARLY_STOPPING_PATIENCE = {spec.early_stopping_patience}",
    ]
    if spec.data_dir:
        out.append(f"DATA_DIR = {json.dumps(spec.data_dir)}")
    return out + list(spec.bindings)


def train(spec: TrainSpec) -> dict:
    """Runs (or resumes) the trainer in this process with a fresh gin config."""
    import gin

    from t5x_sbs import main
    from t5x_sbs.trainer import train_loop

    gin.clear_config()
    main.parse_gin([spec.model_gin, RUN_GIN], gin_bindings(spec), search_paths=[REPO])
    return train_loop.train(train_loop.RunConfig())


def test_correctness(spec: TrainSpec) -> list[float]:
    """Per test question (split order), 1.0 if the validation-selected checkpoint answers it
    right from the label prefix, else 0.0: the trainer's `infer` run mode, scored one question
    at a time by the task's own seqio metric. For paired tests across methods and seeds."""
    import gin

    from t5x_sbs import main
    from t5x_sbs.trainer import evaluation

    path = os.path.join(spec.model_dir, "predictions_test.jsonl")
    gin.clear_config()
    main.parse_gin([spec.model_gin, RUN_GIN], gin_bindings(spec) + [
        "EvalConfig.split = 'test'", f"EvalConfig.output_path = {json.dumps(path)}"], search_paths=[REPO])
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation.run_mode("infer")
    task = evaluation.label_task_name(spec.mixture)
    metric, _ = evaluation.selection_metric(spec.mixture)
    with open(path, encoding="utf-8") as f:
        predictions = [json.loads(line) for line in f]
    gin.clear_config()
    return [float(evaluation.decode_metrics(task, [p])[metric]) for p in predictions]


def best_step_dir(model_dir: str) -> str:
    """The checkpoint the trainer kept as best on validation (else its latest)."""
    from t5x_sbs import checkpoints

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
    1-3a); returns (data_dir, spm_path, gin bindings for the tasks). Paper datasets with a
    `replay:` teacher read the stored PaLM outputs directly (no store needed)."""
    import types

    from t5x_sbs.experiments import demo

    args = types.SimpleNamespace(
        out_dir=config.out_dir, dataset=config.dataset, data_dir=config.data_dir, teacher=config.teacher,
        teacher_args="", seed=0, train_size=config.train_size, eval_size=config.eval_size,
        vocab_size=config.vocab_size, spm_path=config.spm_path)
    data_dir = demo.prepare_data(args)
    if config.dataset != "arith" and config.teacher.startswith("replay:"):
        from t5x_sbs.tasks import catalog
        catalog.register_all()
        spm_path = config.spm_path or demo.vocabulary_from_texts(args, _paper_texts(config.dataset, data_dir))
        return data_dir, spm_path, ()
    store = demo.annotate(args, data_dir)
    bindings = demo.register(args, data_dir, store)
    return data_dir, demo.vocabulary(args, data_dir, store), bindings


def _paper_texts(dataset: str, data_dir: str) -> list[str]:
    from t5x_sbs.data.vocab import dataset_texts

    return dataset_texts(dataset, data_dir, ("train",))


_PREPARED: dict[str, tuple] = {}


def sweep_cell(config, cell, cell_dir: str) -> dict:
    """One sweep cell: train (or resume) in cell_dir, score from the label prefix."""
    from t5x_sbs.experiments.tables import METHODS
    from t5x_sbs.names import mixture_name

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
    import gin
    import jax

    from t5x_sbs.models.config import T5Config
    from t5x_sbs.models.t5 import init_params

    counts = {}
    gin.add_config_file_search_path(REPO)
    # the cells' embedding rows: the sweep's SentencePiece size padded as in gin_bindings()
    spm_path = config.spm_path or os.path.join(config.out_dir, "vocab", "spm.model")
    vocab = padded_vocab_size(spm_path) if os.path.exists(spm_path) else config.vocab_size
    for size in config.sizes:
        gin.clear_config()
        gin.parse_config_files_and_bindings([config.model_gin(size)],
                                            [f"T5Config.vocab_size = {vocab}", *config.gin_bindings])
        model_config = T5Config.from_gin()
        shapes = jax.eval_shape(lambda: init_params(model_config, jax.random.key(0)))
        counts[size] = int(sum(np.prod(x.shape) for x in jax.tree.leaves(shapes)))
    gin.clear_config()
    return counts

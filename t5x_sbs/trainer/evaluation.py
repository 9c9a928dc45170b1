"""Evaluation: teacher-forced per-task loss, greedy decoding from the label prefix scored with the
task's seqio metrics, and the `eval` / `infer` run modes.

eval: a checkpoint (EvalConfig.checkpoint_path: a MODEL_DIR, whose best/ is used when kept, or a
step dir) on a split; results to MODEL_DIR/eval_<split>.json and stdout. infer: greedy predictions
and their scores as JSONL (EvalConfig.output_path, default MODEL_DIR/predictions_<split>.jsonl)
for the label task's split, or for EvalConfig.input_file (one raw input text per line).
"""
from __future__ import annotations

import json
import logging
import os
import pathlib
import re

import jax
import numpy as np
import seqio
from jax.experimental import multihost_utils

from t5x_sbs import checkpoints
from t5x_sbs.names import LABEL_TASK_ID, RATIONALE_TASK_ID
from t5x_sbs.tasks import catalog
from t5x_sbs.tasks import config as task_config
from t5x_sbs.trainer import builder, input_pipeline
from t5x_sbs.trainer.configs import EvalConfig, TrainConfigs

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- which task
def label_task_name(mixture_or_task_name: str) -> str:
    """The task decoded for metrics: `{ds}_label_gold` when registered, else the mixture's first
    task that has metric functions (its label task), else the task itself."""
    catalog.register_all()

    match = re.fullmatch(r"(.+)_(?:sbs|standard|label)_(gold|llm)(?:_paired)?", mixture_or_task_name)
    if match and f"{match.group(1)}_label_gold" in seqio.TaskRegistry.names():
        return f"{match.group(1)}_label_gold"
    name = mixture_or_task_name.removesuffix("_paired")
    provider = seqio.get_mixture_or_task(name)
    members = list(getattr(provider, "tasks", [provider]))
    with_metrics = [t for t in members if t.metric_fns]
    return (with_metrics or members)[0].name


def has_metrics(task_name: str) -> bool:
    return bool(seqio.get_mixture_or_task(task_name).metric_fns)


# ----------------------------------------------------------------------------- scoring
def teacher_forced_loss(trainer, part, params, batches) -> dict[str, float]:
    """Per-task token-mean loss (no dropout) over fixed global batches, and their λ-weighted sum."""
    totals = None
    with part.activation_context():
        for batch in batches:
            aux = trainer.eval_step(params, part.shard_global_batch(batch))
            totals = aux if totals is None else jax.tree.map(lambda a, b: a + b, totals, aux)
    if totals is None:
        return {}
    totals = jax.tree.map(float, totals)  # replicated scalars: the same on every process
    out = {f"{t}_loss": totals[f"{t}_loss_sum"] / max(1.0, totals[f"{t}_tokens"]) for t in ("label", "rationale")}
    weights = trainer.loss_config.weights()
    out["loss"] = out["label_loss"] * weights[LABEL_TASK_ID] + out["rationale_loss"] * weights[RATIONALE_TASK_ID]
    return out


def _text(vocabulary, ids, eos_id: int) -> str:
    """Token ids up to EOS -> text (padding and EOS dropped)."""
    ids = [int(t) for t in ids]
    ids = ids[: ids.index(eos_id)] if eos_id in ids else ids
    return vocabulary.decode([t for t in ids if t not in (0, eos_id)])


def decode_global(trainer, part, params, encoder_input_tokens: np.ndarray, max_decode_length: int):
    """Greedy decode of a global batch that every process holds; (tokens, scores) of every row, on
    every process, in row order."""
    tokens = part.shard_global_batch({"encoder_input_tokens": encoder_input_tokens})["encoder_input_tokens"]
    decoded, scores = trainer.decode(params, tokens, max_decode_length)
    return multihost_utils.process_allgather((decoded, scores), tiled=True)


def predict(trainer, part, params, batches, vocabulary, max_decode_length: int) -> list[dict]:
    """Greedy decoding of every non-padding row of global batches: input, prediction, log-prob
    score, target. Every process gets every prediction, in input order."""
    eos, out = trainer.model.config.eos_token_id, []
    for batch in batches:
        inputs = batch["encoder_input_tokens"]
        tokens, scores = decode_global(trainer, part, params, inputs, max_decode_length)
        for row in np.flatnonzero(inputs.any(axis=1)):  # all-zero rows are padding
            item = {"input": _text(vocabulary, inputs[row], eos), "prediction": _text(vocabulary, tokens[row], eos),
                    "score": float(scores[row])}
            if "decoder_target_tokens" in batch:
                item["target"] = _text(vocabulary, batch["decoder_target_tokens"][row], eos)
            out.append(item)
    return out


def with_gold_targets(predictions: list[dict], task_name: str, split: str, max_rows: int | None) -> list[dict]:
    """Predictions whose `target` is the task's target text (not the decoded target tokens)."""
    texts = input_pipeline.eval_target_texts(task_name, split, max_rows=max_rows) if predictions else None
    return with_target_texts(predictions, texts, task_name, split)


def with_target_texts(predictions: list[dict], texts: list[str] | None, task_name: str, split: str) -> list[dict]:
    if texts is None:
        return predictions
    if len(texts) != len(predictions):
        raise RuntimeError(f"{task_name} {split}: {len(texts)} target texts for {len(predictions)} predictions")
    return [{**p, "target": text} for p, text in zip(predictions, texts)]


def decode_metrics(task_name: str, predictions: list[dict]) -> dict[str, float]:
    """The task's seqio metric functions on decoded strings (postprocessed as the task says)."""
    task = seqio.get_mixture_or_task(task_name)
    targets = [task.postprocess_fn(p["target"], example=None, is_target=True) for p in predictions]
    preds = [task.postprocess_fn(p["prediction"], example=None, is_target=False) for p in predictions]
    scores = {}
    for fn in task.metric_fns:
        scores.update({k: float(getattr(v, "value", v)) for k, v in fn(targets, preds).items()})
    return scores


class SplitInputs:
    """One split's padded eval batches (of the mixture, and of its label task for decoding) and
    gold target texts. Each is built on first use and kept: a run validates on the same split
    every EVAL_EVERY steps, and each build is a tf.data pass over the split (seconds per decode)."""

    def __init__(self, mixture: str, split: str, lengths, batch_size: int, max_batches: int | None):
        self.mixture, self.split, self.lengths = mixture, split, lengths
        self.batch_size, self.max_batches = batch_size, max_batches
        self.label_task = label_task_name(mixture)
        self._kept: dict[tuple[str, str], object] = {}

    def _once(self, what: str, name: str, make):
        if (what, name) not in self._kept:
            self._kept[(what, name)] = make()
        return self._kept[(what, name)]

    def batches(self, name: str) -> list[dict]:
        return self._once("batches", name, lambda: eval_batches(name, self.split, self.lengths, self.batch_size,
                                                                  self.max_batches))

    def scored_predictions(self, predictions: list[dict]) -> list[dict]:
        """`predictions` of the label task's batches, with the task's target text as `target`."""
        max_rows = self.max_batches and self.max_batches * self.batch_size
        texts = self._once("texts", self.label_task, lambda: input_pipeline.eval_target_texts(
            self.label_task, self.split, max_rows=max_rows) if predictions else None)
        return with_target_texts(predictions, texts, self.label_task, self.split)


def split_scores(trainer, part, params, inputs: SplitInputs, *, decode: bool = True) -> dict[str, float]:
    """Teacher-forced per-task loss on the mixture's split, plus the label task's decode metrics."""
    scores = teacher_forced_loss(trainer, part, params, inputs.batches(inputs.mixture))
    if decode and has_metrics(inputs.label_task):
        vocab = seqio.get_mixture_or_task(inputs.label_task).output_features["targets"].vocabulary
        preds = predict(trainer, part, params, inputs.batches(inputs.label_task), vocab, inputs.lengths["targets"])
        scores.update(decode_metrics(inputs.label_task, inputs.scored_predictions(preds)))
    return scores


def eval_batches(name: str, split: str, lengths, batch_size: int, max_batches: int | None):
    """The split's padded eval batches, or [] (logged) when the task has no such split."""
    try:
        return input_pipeline.eval_batches(name, split, lengths, batch_size, max_batches=max_batches)
    except (ValueError, KeyError) as e:
        log.warning("no %s eval for %s: %s", split, name, e)
        return []


def selection_metric(mixture: str) -> tuple[str, str]:
    """(validation metric key, 'max'|'min') the best checkpoint is kept by: the label task's first
    seqio metric, or the label loss where the task has no metric."""
    task = seqio.get_mixture_or_task(label_task_name(mixture))
    for fn in task.metric_fns:
        keys = list(fn([], []).keys()) if _accepts_empty(fn) else []
        if keys:
            return keys[0], "max"
    return "label_loss", "min"


def _accepts_empty(fn) -> bool:
    try:
        fn([], [])
        return True
    except Exception:  # noqa: BLE001  a metric fn may reject empty input; then fall back to loss
        return False


# ----------------------------------------------------------------------------- run modes
def _restore(run, cfg, trainer):
    source = pathlib.Path(cfg.checkpoint_path or run.model_dir)
    abstract = trainer.abstract_state()
    if (source / "state").is_dir():
        return checkpoints.restore_step_dir(source, abstract)[0], str(source)
    manager = checkpoints.CheckpointManager(source, save_interval_steps=1)
    if manager.best_step() is not None:
        return manager.restore_best(abstract)[0], str(source / checkpoints.BEST_DIR / str(manager.best_step()))
    return manager.restore(abstract)[0], str(source / str(manager.latest_step()))


def _input_file_batches(path: str, lengths, batch_size: int, vocabulary, eos_id: int) -> list[dict]:
    """Raw texts (one per line) -> global encoder batches, with the label prefix, truncated, EOS-ended."""
    prefix = task_config.prefixes()["label"]
    lines = [line.rstrip("\n") for line in open(path, encoding="utf-8")]
    empty = [i + 1 for i, line in enumerate(lines) if not line.strip()]
    if empty:
        raise ValueError(f"{path}:{empty[0]}: empty input line (one raw input text per line)")
    batches = []
    for start in range(0, len(lines), batch_size):
        tokens = np.zeros((batch_size, lengths["inputs"]), np.int32)
        for row, text in enumerate(lines[start:start + batch_size]):
            ids = list(vocabulary.encode(prefix + text))[: lengths["inputs"] - 1] + [eos_id]
            tokens[row, : len(ids)] = ids
        batches.append({"encoder_input_tokens": tokens})
    return batches


def run_mode(mode: str, configs: TrainConfigs, cfg: EvalConfig) -> int:
    """The eval / infer run modes on the run's typed configs and the EvalConfig."""
    run = configs.run
    source_dir = cfg.checkpoint_path or run.model_dir
    builder.resolve_vocabulary(run, checkpoints_dir=source_dir)
    _, part, trainer = builder.build(configs.with_run(pack=False))
    params_state, source = _restore(run, cfg, trainer)
    params = params_state.params
    log.info("evaluating %s (step %d)", source, int(params_state.step))
    task = label_task_name(run.mixture_or_task_name)
    vocab = seqio.get_mixture_or_task(task).output_features["targets"].vocabulary
    os.makedirs(run.model_dir, exist_ok=True)
    if mode == "infer":
        if cfg.input_file:
            batches = _input_file_batches(cfg.input_file, run.task_feature_lengths, run.batch_size, vocab,
                                          trainer.model.config.eos_token_id)
        else:
            batches = eval_batches(task, cfg.split, run.task_feature_lengths, run.batch_size, cfg.max_batches)
        preds = predict(trainer, part, params, batches, vocab, run.task_feature_lengths["targets"])
        if not cfg.input_file:
            preds = with_gold_targets(preds, task, cfg.split, cfg.max_batches and cfg.max_batches * run.batch_size)
        name = "input" if cfg.input_file else cfg.split
        path = cfg.output_path or os.path.join(run.model_dir, f"predictions_{name}.jsonl")
        if jax.process_index() == 0:
            with open(path, "w") as f:
                f.writelines(json.dumps(p) + "\n" for p in preds)
        print(f"wrote {len(preds)} predictions to {path}")
        return 0
    results = {"checkpoint": source, "step": int(params_state.step), "split": cfg.split,
               **split_scores(trainer, part, params, SplitInputs(run.mixture_or_task_name, cfg.split,
                                                                 run.task_feature_lengths, run.batch_size, cfg.max_batches))}
    if jax.process_index() == 0:
        with open(os.path.join(run.model_dir, f"eval_{cfg.split}.json"), "w") as f:
            json.dump(results, f, indent=1)
    print(json.dumps(results))
    return 0

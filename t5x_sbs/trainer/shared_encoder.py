"""Shared-encoder step-by-step (LOSS_MODE = 'shared_encoder'): each example's input is encoded
once and the decoder produces both its label and its rationale.

An example of a paired task is a label row ("predict: " + x -> label) and a rationale row
("explain: " + x -> rationale). Here the encoder reads only the label row's input, the form the
student answers from at test time, and the packed row's decoder holds two segments that read
that one encoded input (`decoder_encoder_segment_ids`) while each attends only to itself
(`decoder_segment_ids`):

    encoder   | predict: x                             |
    decoder   | label </s> | explain : rationale </s>  |
    task ids  | 1  ...  1  | 0    0  2   ...    2     |

The label segment is the standard label row's decoder part (start token 0, the label tokens), so
evaluation, inference and decoding are unchanged: the student answers from the label prefix
alone. The rationale segment starts with the rationale prefix's tokens (the task identity, on the
decoder side); they carry no loss (task id 0), so L = L_label + λ·L_rationale keeps each term a
mean over its own target tokens. The encoder runs once per example instead of twice.

The stream (order, resume state, process slicing) is input_pipeline.TrainBatches'; only what a
unit becomes and how a row is laid out differ.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from t5x_sbs.trainer import input_pipeline
from t5x_sbs.names import LABEL_TASK_ID, PAD_TASK_ID, RATIONALE_TASK_ID
from t5x_sbs.tasks import config as task_config

LOSS_MODE = "shared_encoder"
BATCH_KEYS = ("encoder_input_tokens", "encoder_segment_ids", "encoder_positions", "decoder_input_tokens",
              "decoder_target_tokens", "decoder_loss_weights", "decoder_task_ids", "decoder_segment_ids",
              "decoder_positions", "decoder_encoder_segment_ids")

# One example: (encoder inputs, decoder targets = label ++ prefix ++ rationale, label length).
SharedExample = tuple[np.ndarray, np.ndarray, int]


def shared_example(inputs, label, rationale, prefix) -> SharedExample:
    """Token arrays -> (inputs, label ++ prefix ++ rationale, label length)."""
    label, rationale, prefix = (np.asarray(x, np.int32) for x in (label, rationale, prefix))
    return np.asarray(inputs, np.int32), np.concatenate([label, prefix, rationale]), len(label)


def _trimmed(rationale: np.ndarray, budget: int) -> np.ndarray:
    """At most `budget` tokens, the EOS kept last (as seqio's append_eos_after_trim)."""
    if len(rationale) <= budget:
        return rationale
    if budget < 1:
        return rationale[:0]
    return np.concatenate([rationale[:budget - 1], rationale[-1:]])


def pack_shared_rows(rows: Sequence[Sequence[SharedExample]], lengths: tuple[int, int],
                     prefix_length: int) -> dict[str, np.ndarray]:
    """Rows of shared examples -> a packed batch: example j of a row is encoder segment j and
    decoder segments 2j-1 (label) and 2j (prefix + rationale), both reading encoder segment j;
    each decoder segment is shifted right from 0 and numbers its positions from 0."""
    out = {k: np.zeros((len(rows), lengths[0] if k.startswith("encoder") else lengths[1]), np.int32)
           for k in BATCH_KEYS}
    for r, examples in enumerate(rows):
        enc = dec = 0
        for j, (inputs, targets, label_length) in enumerate(examples, start=1):
            i = slice(enc, enc + len(inputs))
            out["encoder_input_tokens"][r, i], out["encoder_segment_ids"][r, i] = inputs, j
            out["encoder_positions"][r, i] = np.arange(len(inputs))
            parts = [(targets[:label_length], 2 * j - 1, LABEL_TASK_ID, 0)]
            if len(targets) > label_length:
                parts.append((targets[label_length:], 2 * j, RATIONALE_TASK_ID, prefix_length))
            for tokens, segment, task_id, unweighted in parts:
                t = slice(dec, dec + len(tokens))
                out["decoder_target_tokens"][r, t] = tokens
                out["decoder_input_tokens"][r, dec + 1:dec + len(tokens)] = tokens[:-1]
                out["decoder_segment_ids"][r, t], out["decoder_encoder_segment_ids"][r, t] = segment, j
                out["decoder_positions"][r, t] = np.arange(len(tokens))
                weights = (tokens > 0).astype(np.int32)
                weights[:unweighted] = 0  # the rationale prefix: task identity, not a target
                out["decoder_loss_weights"][r, t] = weights
                out["decoder_task_ids"][r, t] = np.where(weights > 0, task_id, PAD_TASK_ID)
                dec += len(tokens)
            enc += len(inputs)
    return out


def _check_paired(rows: input_pipeline.TaskRows) -> None:
    """Every unit must be (label row, rationale row) pairs of one example, as `{ds}_sbs_{src}_paired`."""
    odd = np.flatnonzero(np.diff(rows.unit_starts) % 2)
    expected = np.resize(np.asarray([LABEL_TASK_ID, RATIONALE_TASK_ID], np.int32), len(rows.task_ids))
    wrong = np.flatnonzero(rows.task_ids != expected)
    if odd.size or wrong.size:
        where = (f"example at row {int(rows.unit_starts[odd[0]])} has {int(np.diff(rows.unit_starts)[odd[0]])} rows"
                 if odd.size else f"row {int(wrong[0])} has task id {int(rows.task_ids[wrong[0]])}")
        raise ValueError(f"LOSS_MODE='{LOSS_MODE}' needs a paired task (each example's label row then its "
                         f"rationale row, e.g. cqa_sbs_llm_paired); {rows.name}: {where}")


class SharedEncoderBatches(input_pipeline.TrainBatches):
    """TrainBatches whose unit is one shared example per (label row, rationale row) pair."""

    def __init__(self, rows, rates, feature_lengths: Mapping[str, int], global_batch_size: int, *,
                 rationale_prefix: Sequence[int], pack: bool, seed: int, state: Mapping | None = None,
                 bucket_window: int = 0):
        super().__init__(rows, rates, feature_lengths, global_batch_size, pack=pack, seed=seed, state=state,
                         bucket_window=bucket_window)
        self.prefix = np.asarray(rationale_prefix, np.int32)
        if not len(self.prefix):
            raise ValueError(f"LOSS_MODE='{LOSS_MODE}': the rationale prefix is empty; the decoder needs it "
                             "to tell the rationale from the label (bind tasks.config.prefixes.rationale)")
        for task_rows in rows:
            _check_paired(task_rows)

    def _draw(self, state) -> list:
        refs = super()._draw(state)
        return [(task, (row, refs[k + 1][1])) for k, (task, row) in enumerate(refs) if k % 2 == 0]

    def _example(self, ref) -> SharedExample:
        task, (label_row, rationale_row) = ref
        rows = self.stream.rows[task]
        label = rows.targets[label_row]
        rationale = _trimmed(rows.targets[rationale_row], self.lengths[1] - len(label) - len(self.prefix))
        prefix = self.prefix if len(rationale) else self.prefix[:0]
        return shared_example(rows.inputs[label_row], label, rationale, prefix)

    def _pack(self, rows: list[list[SharedExample]], lengths: tuple[int, int]) -> dict[str, np.ndarray]:
        return pack_shared_rows(rows, lengths, len(self.prefix))


def rationale_prefix_tokens(task) -> np.ndarray:
    """The rationale prefix (tasks.config.prefixes, e.g. 'explain:') in the task's vocabulary."""
    text = task_config.prefixes()["rationale"].strip()
    return np.asarray(task.output_features["targets"].vocabulary.encode(text) if text else [], np.int32)


def train_batches(name: str, feature_lengths: Mapping[str, int], global_batch_size: int, *, pack: bool,
                  seed: int, state: Mapping | None = None, use_cached: bool = False,
                  bucket_window: int = 0) -> SharedEncoderBatches:
    """The shared-encoder training iterator of a paired task (input_pipeline.train_batches' contract)."""
    members, rates = input_pipeline._tasks_and_rates(name)
    rows = [input_pipeline.read_task_rows(t, feature_lengths, use_cached=use_cached) for t in members]
    return SharedEncoderBatches(rows, rates, feature_lengths, global_batch_size, pack=pack, seed=seed, state=state,
                                rationale_prefix=rationale_prefix_tokens(members[0]), bucket_window=bucket_window)

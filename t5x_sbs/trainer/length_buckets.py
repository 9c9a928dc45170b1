"""Length-bucketed training batches (RunConfig.length_bucket_window): one unit a row (a paired
example's label and rationale rows packed together, or one example a row unpacked), batches of
units of similar length, each batch padded only to its bucket.

Packing fills rows with several examples but pays attention between every pair of positions in a
row, masked or not: with short examples in long rows that quadratic term dominates the step
(benchmarks/sbs_throughput.py). Bucketing cuts padding the other way, as tf.data's
`bucket_by_sequence_length` and Hugging Face's `group_by_length` do:
  - a window of W batches' worth of units is drawn from the stream as usual (same order, same
    resume state), sorted by length and cut back into batches, whose order a seed shuffles;
  - each batch is padded to the smallest bucket that holds its longest input and its longest
    target. Buckets grow by at most 1.25× (8, 10, 12, 14, 16, 20, ...) up to the feature length, so
    rounding up pads less than a fifth of a row, and the step compiles once per (input, target)
    bucket pair a run meets (8–10 in benchmarks/sbs_throughput.py on CQA; a coarser ladder, 1.5×,
    padded 0.80 of the tokens instead of 0.86 there, with 6 shapes).
The global batch is still decided from the rows' lengths alone, so every process agrees on it.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

SMALLEST_BUCKET = 8
WINDOW_SEED_STREAM = 2  # input_pipeline seeds the task mix with stream 0 and the permutations with 1


def layout_warning(loss_mode: str, task_name: str) -> str | None:
    """Why buckets suit this run's layout badly, or None. A step-by-step *mixture* draws label rows
    and rationale rows as separate units; sorting by length puts them in different batches."""
    if loss_mode == "mixture" and "_sbs_" in task_name:
        return (f"length buckets sort {task_name}'s label rows and rationale rows into different batches "
                "(their targets differ in length), so a step sees mostly one task: LOSS_MODE='paired' or "
                "'shared_encoder' keeps an example's two targets in one batch row")
    return None


def bucket_lengths(cap: int) -> list[int]:
    """8, 10, 12, 14, 16, 20, 24, 28, 32, 40, ... below `cap`, then `cap`: four a doubling, each at
    most 1.25× the one before."""
    out, power = [], SMALLEST_BUCKET
    while power < cap:
        out += [b for b in (power, power * 5 // 4, power * 3 // 2, power * 7 // 4) if b < cap]
        power *= 2
    return out + [cap]


def bucket_for(length: int, cap: int) -> int:
    """The smallest bucket (of `bucket_lengths(cap)`) that holds `length` tokens."""
    if length > cap:
        raise ValueError(f"a row of {length} tokens is longer than the feature length {cap}")
    return next(b for b in bucket_lengths(cap) if b >= length)


def batch_widths(lengths: Sequence[tuple[int, int]], caps: tuple[int, int]) -> tuple[int, int]:
    """(input, target) width of a batch whose examples have these (input, target) lengths."""
    longest = np.max(np.asarray(lengths), axis=0) if len(lengths) else (0, 0)
    return bucket_for(int(longest[0]), caps[0]), bucket_for(int(longest[1]), caps[1])


def cut_window(unit_lengths: Sequence[Sequence[tuple[int, int]]], batch_rows: int,
               rng: np.random.Generator, caps: tuple[int, int]) -> list[list[int]]:
    """Unit indices sorted by (target bucket, input bucket, lengths) and cut greedily into batches of
    at most `batch_rows` rows (a unit is never split), in an order `rng` shuffles."""
    def key(u: int):
        longest = np.max(np.asarray(unit_lengths[u]), axis=0)
        inputs, targets = int(longest[0]), int(longest[1])
        return bucket_for(targets, caps[1]), bucket_for(inputs, caps[0]), targets, inputs, u

    batches, current, used = [], [], 0
    for u in sorted(range(len(unit_lengths)), key=key):
        rows = len(unit_lengths[u])
        if rows > batch_rows:
            raise ValueError(f"BATCH_SIZE={batch_rows} rows cannot hold one example's {rows} rows: raise BATCH_SIZE")
        if used + rows > batch_rows:
            batches.append(current)
            current, used = [], 0
        current.append(u)
        used += rows
    batches += [current] if current else []
    return [batches[i] for i in rng.permutation(len(batches))]


@dataclasses.dataclass(frozen=True)
class Window:
    """W batches' units drawn from `start`, as batches of units with their (input, target) widths,
    and the stream state after them."""

    start_position: int
    batches: list[list[list]]  # batch -> unit -> (task, row) refs
    widths: list[tuple[int, int]]  # per batch: the buckets of its longest input and target
    end: object  # input_pipeline.StreamState after the window's draws


def draw_window(start, *, draw: Callable, row_lengths: Callable, batch_rows: int, window_batches: int,
                seed: int, caps: tuple[int, int]) -> Window:
    """Draws units with `draw(state)` (which advances a copy of `start`) until the next would not
    fit in `window_batches * batch_rows` rows, then cuts them into length-sorted batches.
    `row_lengths(unit)`: the (input, target) tokens of each row the unit takes."""
    state = dataclasses.replace(start, counts=list(start.counts), window_offset=0)
    units, lengths, rows = [], [], 0
    while True:
        before = dataclasses.replace(state, counts=list(state.counts))
        unit = draw(state)
        unit_lengths = row_lengths(unit)
        if rows + len(unit_lengths) > window_batches * batch_rows and units:
            state = before
            break
        units.append(unit)
        lengths.append(unit_lengths)
        rows += len(unit_lengths)
    rng = np.random.default_rng([seed, WINDOW_SEED_STREAM, start.position])
    order = cut_window(lengths, batch_rows, rng, caps)
    return Window(start.position, [[units[u] for u in batch] for batch in order],
                  [batch_widths([row for u in batch for row in lengths[u]], caps) for batch in order], state)

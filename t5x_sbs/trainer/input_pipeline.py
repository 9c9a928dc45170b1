"""SeqIO tasks -> training batches decided per global position; fixed, globally ordered eval batches.

Training (index-based, Grain-style): each task's preprocessed train rows are read once through
SeqIO (unshuffled, trimmed to the feature lengths) and kept as token arrays. The stream is then
a pure function of the seed:
  - which task fills stream position p is drawn per block of positions (seeded by the block), with
    the mixture's rates;
  - the n-th unit of task t is permutation(seed, t, epoch = n // N_t)[n % N_t], where a unit is a
    run of consecutive rows sharing an `id` (a paired task's label + rationale rows stay adjacent).
Rows are packed greedily in stream order (a packed row closes when the next example does not
fit) and B consecutive packed rows make the global batch; or, with length buckets, windows of
units are sorted by length into batches of one unit a row (t5x_sbs.trainer.length_buckets).
Every process works out the global batch's layout from the rows' lengths alone and builds only its own block of rows, so the global
batch at step k is the same for 1, 2 or 4 processes, and the iterator's state (stream position,
per-task counts) is a small JSON dict: resuming from a checkpoint is O(1) and works across a
change of process count.

Evaluation: every process reads the whole split in order and cuts it into the same global
batches (the last padded with empty rows); each places its part on its devices, and decoded ids
are gathered back in that order, so every process scores every example.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Iterator, Mapping

import jax
import numpy as np
import seqio

from t5x_sbs.data.feature_converter import TaskAwareEncDecFeatureConverter
from t5x_sbs.names import LABEL_TASK_ID, LOSS_MODES
from t5x_sbs.tasks import cache, catalog
from t5x_sbs.trainer import length_buckets

MIX_BLOCK = 4096  # stream positions whose task is drawn by one seeded generator
STATE_VERSION = 1
log = logging.getLogger(__name__)


def training_task_name(mixture_or_task_name: str, loss_mode: str) -> str:
    """paired and shared_encoder: the `{ds}_sbs_{src}_paired` task (label and rationale rows of one
    example adjacent); mixture: the mixture itself. Standard (label-only) mixtures have no paired form."""
    if loss_mode not in LOSS_MODES:
        raise ValueError(f"LOSS_MODE={loss_mode!r}: expected one of {LOSS_MODES}")
    if loss_mode != "mixture" and "_sbs_" in mixture_or_task_name and not mixture_or_task_name.endswith("_paired"):
        return mixture_or_task_name + "_paired"
    return mixture_or_task_name


def local_rows(global_rows: int) -> slice:
    """This process's block of a global batch's rows (process i feeds block i, as
    Partitioner.global_batch checks)."""
    if global_rows % jax.process_count():
        raise ValueError(f"BATCH_SIZE={global_rows} not divisible by {jax.process_count()} processes")
    size = global_rows // jax.process_count()
    return slice(jax.process_index() * size, (jax.process_index() + 1) * size)


# ----------------------------------------------------------------------------- reading rows
@dataclasses.dataclass(frozen=True)
class TaskRows:
    """One task's train rows as token arrays, grouped into units (runs of rows sharing an id)."""

    name: str
    inputs: list[np.ndarray]
    targets: list[np.ndarray]
    task_ids: np.ndarray
    unit_starts: np.ndarray  # unit u = rows [unit_starts[u], unit_starts[u + 1])

    @property
    def num_units(self) -> int:
        return len(self.unit_starts) - 1


def read_task_rows(task: seqio.Task, feature_lengths: Mapping[str, int], *, use_cached: bool = False) -> TaskRows:
    """The task's train rows in its (unshuffled) order. `use_cached`: read from the task's SeqIO
    cache (`t5x-sbs cache-tasks`, found in `tasks.config.cache_dirs`), put back in the uncached
    order, so the batches are those of an uncached run (`t5x_sbs.tasks.cache`)."""
    use_cached = use_cached and cache.prepare_cached_read(task)
    ds = task.get_dataset(sequence_length=dict(feature_lengths), split="train", shuffle=False, num_epochs=1,
                          use_cached=use_cached)
    rows = cache.in_source_order(list(ds.as_numpy_iterator())) if use_cached else ds.as_numpy_iterator()
    inputs, targets, task_ids, ids = [], [], [], []
    for row in rows:
        inputs.append(np.asarray(row["inputs"], np.int32))
        targets.append(np.asarray(row["targets"], np.int32))
        task_ids.append(int(row.get("task", LABEL_TASK_ID)))
        ids.append(row.get("id", len(ids)))
    if not inputs:
        raise ValueError(f"task {task.name} has no train rows")
    _warn_unknown_pieces(task, targets)
    starts = [0] + [i for i in range(1, len(ids)) if ids[i] != ids[i - 1]] + [len(ids)]
    return TaskRows(task.name, inputs, targets, np.asarray(task_ids, np.int32), np.asarray(starts))


def _warn_unknown_pieces(task: seqio.Task, targets: list[np.ndarray]) -> int:
    """Counts (and logs) train targets the vocabulary cannot spell: they hold its unknown piece, so
    the model learns to answer "unknown" (a vocabulary trained on text without some digit, say)."""
    unk = getattr(task.output_features["targets"].vocabulary, "unk_id", None)
    bad = [i for i, t in enumerate(targets) if unk is not None and (t == unk).any()]
    if bad:
        log.warning("%s: %d of %d train targets hold the vocabulary's unknown piece (first: row %d); "
                    "train the vocabulary on text with every character of the targets", task.name,
                    len(bad), len(targets), bad[0])
    return len(bad)


def _tasks_and_rates(name: str) -> tuple[list[seqio.Task], np.ndarray]:
    catalog.register_all()
    provider = seqio.get_mixture_or_task(name)
    if isinstance(provider, seqio.Mixture):
        members = [t for t in provider.tasks if provider.get_rate(t) > 0]
        rates = np.asarray([provider.get_rate(t) for t in members], np.float64)
    else:
        members, rates = [provider], np.ones(1)
    return members, rates / rates.sum()


# ----------------------------------------------------------------------------- the stream
class _Stream:
    """Rows in stream order from (seed, position, per-task counts); never materialises an epoch."""

    def __init__(self, rows: list[TaskRows], rates: np.ndarray, seed: int):
        self.rows, self.rates, self.seed = rows, rates, seed
        self._mix_cache: dict[int, np.ndarray] = {}
        self._perm_cache: dict[tuple[int, int], np.ndarray] = {}

    def task_at(self, position: int) -> int:
        block = position // MIX_BLOCK
        if block not in self._mix_cache:
            if len(self._mix_cache) > 4:
                self._mix_cache.clear()
            rng = np.random.default_rng([self.seed, 0, block])
            self._mix_cache[block] = rng.choice(len(self.rates), size=MIX_BLOCK, p=self.rates)
        return int(self._mix_cache[block][position % MIX_BLOCK])

    def unit(self, task: int, count: int) -> range:
        """Row indices of the `count`-th unit drawn from `task`."""
        rows = self.rows[task]
        epoch, index = divmod(count, rows.num_units)
        key = (task, epoch)
        if key not in self._perm_cache:
            if len(self._perm_cache) > 2 * len(self.rows):
                self._perm_cache.clear()
            self._perm_cache[key] = np.random.default_rng([self.seed, 1, task, epoch]).permutation(rows.num_units)
        u = int(self._perm_cache[key][index])
        return range(int(rows.unit_starts[u]), int(rows.unit_starts[u + 1]))


@dataclasses.dataclass
class StreamState:
    """Where the stream stands after a batch: what a checkpoint stores (`data_state`)."""

    position: int = 0  # units drawn so far (length buckets: before the current window)
    counts: list[int] | None = None  # units drawn per task
    batches: int = 0
    window_offset: int = 0  # length buckets: batches of the current window already returned
    bucket_window: int = 0  # ... of windows of this many batches

    def to_json(self) -> dict:
        return {"version": STATE_VERSION, "position": self.position, "counts": list(self.counts),
                "batches_consumed": self.batches, "window_offset": self.window_offset,
                "bucket_window": self.bucket_window}

    @classmethod
    def from_json(cls, data: Mapping, num_tasks: int) -> "StreamState":
        if data.get("version") != STATE_VERSION or len(data.get("counts", ())) != num_tasks:
            raise ValueError(f"input state {dict(data)} does not fit this pipeline ({num_tasks} tasks)")
        return cls(int(data["position"]), [int(c) for c in data["counts"]], int(data["batches_consumed"]),
                   int(data.get("window_offset", 0)), int(data.get("bucket_window", 0)))


def _fits(used: tuple[int, int], example: tuple[np.ndarray, np.ndarray], lengths: tuple[int, int]) -> bool:
    return used[0] + len(example[0]) <= lengths[0] and used[1] + len(example[1]) <= lengths[1]


class TrainBatches(Iterator[dict]):
    """This process's rows of each global training batch; `state()` after each, O(1) resume."""

    def __init__(self, rows: list[TaskRows], rates: np.ndarray, feature_lengths: Mapping[str, int],
                 global_batch_size: int, *, pack: bool, seed: int, state: Mapping | None = None,
                 bucket_window: int = 0):
        """`bucket_window` > 0: batches sorted by length over windows of that many batches and padded
        to length buckets (t5x_sbs.trainer.length_buckets), one unit a row: its rows packed together
        (`pack`) or one example a row."""
        self.stream = _Stream(rows, rates, seed)
        self.lengths = (int(feature_lengths["inputs"]), int(feature_lengths["targets"]))
        self.global_batch_size, self.pack, self.bucket_window = global_batch_size, pack, bucket_window
        self.rows_slice = local_rows(global_batch_size)
        self._state = (StreamState.from_json(state, len(rows)) if state
                       else StreamState(0, [0] * len(rows), 0))
        if self._state.window_offset and self._state.bucket_window != bucket_window:
            raise ValueError(f"input state {dict(state)} stopped inside a window of {self._state.bucket_window} "
                             f"length-bucketed batches: resume with RunConfig.length_bucket_window = "
                             f"{self._state.bucket_window} (now {bucket_window}), or batches would repeat or skip")
        self._window: length_buckets.Window | None = None

    def state(self) -> dict:
        """The state after the last batch returned: pass it back as `state=` to continue from there."""
        return self._state.to_json()

    def _draw(self, state: StreamState) -> list[tuple[int, int]]:
        task = self.stream.task_at(state.position)
        unit = self.stream.unit(task, state.counts[task])
        state.position += 1
        state.counts[task] += 1
        return [(task, r) for r in unit]

    def _example(self, ref: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, int]:
        rows = self.stream.rows[ref[0]]
        return rows.inputs[ref[1]], rows.targets[ref[1]], int(rows.task_ids[ref[1]])

    def _place(self, rows: tuple, ref: tuple[int, int]) -> tuple:
        """(closed rows, open row, used lengths) with `ref` added; unpacked rows hold one example."""
        closed, current, used = rows
        example = self._example(ref)
        if current and (not self.pack or not _fits(used, example, self.lengths)):
            closed, current, used = closed + [current], [], (0, 0)
        return closed, current + [ref], (used[0] + len(example[0]), used[1] + len(example[1]))

    def _layout(self) -> list[list[tuple[int, int]]]:
        """The global batch's rows as (task, row) refs; advances the state past them. Units are
        never split across batches: the first unit that does not fit starts the next batch."""
        state = dataclasses.replace(self._state, counts=list(self._state.counts))
        rows: tuple = ([], [], (0, 0))
        while True:
            before = dataclasses.replace(state, counts=list(state.counts))
            trial, unit = rows, self._draw(state)
            for ref in unit:
                trial = self._place(trial, ref)
            if len(trial[0]) + bool(trial[1]) > self.global_batch_size:
                if not rows[0] and not rows[1]:
                    raise ValueError(f"BATCH_SIZE={self.global_batch_size} rows cannot hold one example's "
                                     f"{len(unit)} rows (paired task, unpacked): raise BATCH_SIZE")
                state = before
                break
            rows = trial
        closed, current, _ = rows
        state.batches += 1
        self._state = state
        return closed + ([current] if current else [])

    def _bucketed_layout(self) -> tuple[list[list[tuple[int, int]]], tuple[int, int]]:
        """The next batch of the current length-sorted window (drawn when the last one is used up),
        and its (input, target) widths."""
        start = self._state
        if self._window is None or self._window.start_position != start.position:
            self._window = length_buckets.draw_window(
                start, draw=self._draw, row_lengths=lambda unit: self._row_lengths(self._unit_rows(unit)),
                batch_rows=self.global_batch_size, window_batches=self.bucket_window, seed=self.stream.seed,
                caps=self.lengths)
        window = self._window
        if start.window_offset + 1 < len(window.batches):
            self._state = dataclasses.replace(start, counts=list(start.counts), window_offset=start.window_offset + 1)
        else:
            self._state = dataclasses.replace(window.end, counts=list(window.end.counts), window_offset=0)
        self._state.batches, self._state.bucket_window = start.batches + 1, self.bucket_window
        rows = [row for unit in window.batches[start.window_offset] for row in self._unit_rows(unit)]
        return rows, window.widths[start.window_offset]

    def _unit_rows(self, unit: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
        """Length buckets: a unit's rows: packed together where they fit (`pack`), else one example each."""
        rows: tuple = ([], [], (0, 0))
        for ref in unit:
            rows = self._place(rows, ref)
        return rows[0] + [rows[1]]

    def _row_lengths(self, rows: list[list]) -> list[tuple[int, int]]:
        """(input, target) tokens of each row of (task, row) refs."""
        out = []
        for row in rows:
            examples = [self._example(ref) for ref in row]
            out.append((sum(len(e[0]) for e in examples), sum(len(e[1]) for e in examples)))
        return out

    def _pack(self, rows: list[list], lengths: tuple[int, int]) -> dict[str, np.ndarray]:
        return pack_rows(rows, lengths, pack=self.pack)

    def __next__(self) -> dict[str, np.ndarray]:
        # Bucket widths come from the global batch, so every process pads its rows alike.
        layout, lengths = self._bucketed_layout() if self.bucket_window else (self._layout(), self.lengths)
        layout += [[] for _ in range(self.global_batch_size - len(layout))]  # empty rows: padding
        return self._pack([[self._example(ref) for ref in row] for row in layout[self.rows_slice]], lengths)


def pack_rows(rows: list[list[tuple[np.ndarray, np.ndarray, int]]], lengths: tuple[int, int], *,
              pack: bool) -> dict[str, np.ndarray]:
    """Rows of (inputs, targets, task id) examples -> the feature converter's batch layout:
    each segment's decoder inputs are its targets shifted right (0 first), positions restart per
    segment, the task id covers the segment's target tokens; zeros are padding."""
    keys = ["encoder_input_tokens", "decoder_target_tokens", "decoder_input_tokens", "decoder_loss_weights",
            "decoder_task_ids"]
    if pack:
        keys += ["encoder_segment_ids", "decoder_segment_ids", "encoder_positions", "decoder_positions"]
    out = {k: np.zeros((len(rows), lengths[0] if k.startswith("encoder") else lengths[1]), np.int32) for k in keys}
    for r, examples in enumerate(rows):
        enc = dec = 0
        for segment, (inputs, targets, task_id) in enumerate(examples, start=1):
            i, t = slice(enc, enc + len(inputs)), slice(dec, dec + len(targets))
            out["encoder_input_tokens"][r, i] = inputs
            out["decoder_target_tokens"][r, t] = targets
            # Shifted right: packed, each segment starts from 0; unpacked, the whole padded row
            # shifts (its EOS lands on the first padding position, weight 0), as seqio does.
            shifted = targets if not pack and dec + len(targets) < lengths[1] else targets[:-1]
            out["decoder_input_tokens"][r, dec + 1:dec + 1 + len(shifted)] = shifted
            out["decoder_loss_weights"][r, t] = targets > 0
            out["decoder_task_ids"][r, t] = task_id
            if pack:
                out["encoder_segment_ids"][r, i], out["decoder_segment_ids"][r, t] = segment, segment
                out["encoder_positions"][r, i] = np.arange(len(inputs))
                out["decoder_positions"][r, t] = np.arange(len(targets))
            enc, dec = enc + len(inputs), dec + len(targets)
    return out


def train_batches(name: str, feature_lengths: Mapping[str, int], global_batch_size: int, *, pack: bool,
                  seed: int, state: Mapping | None = None, use_cached: bool = False,
                  bucket_window: int = 0) -> TrainBatches:
    """The training iterator of a task or mixture (see the module docstring)."""
    members, rates = _tasks_and_rates(name)
    rows = [read_task_rows(t, feature_lengths, use_cached=use_cached) for t in members]
    return TrainBatches(rows, rates, feature_lengths, global_batch_size, pack=pack, seed=seed, state=state,
                        bucket_window=bucket_window)


# ----------------------------------------------------------------------------- evaluation
def _eval_dataset(name: str, split: str, feature_lengths: Mapping[str, int]):
    """A task or mixture's split, unpacked and in order, through the feature converter; read whole by
    every process (no ShardInfo)."""
    catalog.register_all()

    return seqio.get_dataset(
        name, task_feature_lengths=dict(feature_lengths), dataset_split=split, shuffle=False, num_epochs=1,
        feature_converter=TaskAwareEncDecFeatureConverter(pack=False), shard_info=None, use_cached=False,
    )


def eval_batches(name: str, split: str, feature_lengths: Mapping[str, int], global_batch_size: int,
                 *, max_batches: int | None = None) -> list[dict[str, np.ndarray]]:
    """The split as *global* padded batches in input order, the same on every process (the last
    padded with all-zero rows, which carry zero task ids and so add nothing to any sum).
    `Partitioner.shard_global_batch` places each process's part on its devices."""
    ds = _eval_dataset(name, split, feature_lengths).batch(global_batch_size)
    out = []
    for batch in ds.as_numpy_iterator():
        out.append(pad_rows(batch, global_batch_size))
        if max_batches is not None and len(out) >= max_batches:
            break
    return out


def eval_target_texts(name: str, split: str, *, max_rows: int | None = None) -> list[str] | None:
    """The split's targets as text before tokenization (`targets_pretokenized`), in the order of
    eval_batches, or None when the task keeps none. Metrics compare predictions with these, as
    seqio's Evaluator does: a target the vocabulary cannot spell (it decodes to the unknown piece,
    as a wrong prediction may) or one cut at the target length never counts as matched."""
    catalog.register_all()

    ds = seqio.get_mixture_or_task(name).get_dataset(sequence_length=None, split=split, shuffle=False,
                                                      num_epochs=1, use_cached=False)
    if "targets_pretokenized" not in ds.element_spec:
        return None
    if max_rows is not None:
        ds = ds.take(max_rows)
    return [t.decode("utf-8") for t in ds.map(lambda ex: ex["targets_pretokenized"]).as_numpy_iterator()]


def pad_rows(batch: Mapping[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
    have = next(iter(batch.values())).shape[0]
    return {k: np.concatenate([v, np.zeros((rows - have,) + v.shape[1:], v.dtype)]) if have < rows else v
            for k, v in batch.items()}

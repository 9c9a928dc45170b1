"""A teacher store aligned to a split's examples: the one reading rule, then the samples mode.

The store is read by `teacher.store.read_store` (records keyed by id, teacher, prompt hash and
sample; ok beats non-ok), one (teacher, prompt hash) group is chosen (`TeacherReading`, or the
store's only one; a store with several is refused listing them), and each example's samples
become one `TeacherOutput` by `TeacherReading.samples`:

- `first` (default): the lowest sample, whatever its status (one label and one rationale row);
- `vote`: the label is the majority of the ok samples' labels (the dataset's label equality;
  a tie goes to the label whose first sample is lowest); the rationales are the distinct ones
  (after stripping whitespace) of the samples agreeing with it: the lowest is the main one, the
  others extra rationale rows. Identical copies are dropped: at temperature > 0 a teacher often
  repeats itself, and each copy was a row that crowded label rows out of the batches;
- `all`: every ok sample gives a label row and a rationale row of its own.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import os
from typing import Sequence

from t5x_sbs import metrics
from t5x_sbs.teacher.parsing import ParsedOutput
from t5x_sbs.data.sources import DataError, canonical_split_or_none
from t5x_sbs.teacher.parsing import TeacherOutput
from t5x_sbs.records import Example, TeacherRecord
from t5x_sbs.teacher.store import read_store, select_group

log = logging.getLogger(__name__)
SAMPLE_MODES = ("first", "vote", "all")


@dataclasses.dataclass(frozen=True)
class TeacherReading:
    """Which group of a store to read and how to use several samples per example."""

    teacher: str | None = None       # e.g. "gemini:gemini-2.5-flash"; None: the store's only one
    prompt_hash: str | None = None   # a prefix is enough; None: the store's only one
    samples: str = "first"           # first | vote | all

    def __post_init__(self):
        if self.samples not in SAMPLE_MODES:
            raise ValueError(f"teacher samples mode {self.samples!r} is not one of {SAMPLE_MODES}")


def majority(dataset: str, labels: Sequence[str]) -> tuple[str | None, list[int]]:
    """(winning label, indices of the labels agreeing with it); ties go to the earliest label."""
    clusters: list[list[int]] = []
    for i, label in enumerate(labels):
        for cluster in clusters:
            if metrics.labels_equal(dataset, labels[cluster[0]], label):
                cluster.append(i)
                break
        else:
            clusters.append([i])
    if not clusters:
        return None, []
    best = max(clusters, key=lambda c: (len(c), -c[0]))
    return labels[best[0]], best


def _parsed(record: TeacherRecord, label: str | None = None) -> ParsedOutput:
    if record.status == "ok":
        return ParsedOutput(rationale=record.rationale, label=label or record.label, status="ok")
    return ParsedOutput(rationale=record.rationale, label=None, status=record.status,
                        problem=record.error or record.status)


def combine(example: Example, samples: list[TeacherRecord], mode: str) -> TeacherOutput:
    """One example's samples (ascending sample index) -> its TeacherOutput under `mode`."""
    ok = [r for r in samples if r.status == "ok"]
    labels = tuple(r.label for r in ok)
    if mode == "first" or not ok:
        first = samples[0]
        return TeacherOutput(example, first.raw or "", _parsed(first), sample_labels=labels)
    if mode == "all":
        return TeacherOutput(example, ok[0].raw or "", _parsed(ok[0]), sample_labels=labels,
                             extra=tuple(_parsed(r) for r in ok[1:]), extra_labels=True)
    label, agreeing = majority(example.dataset, list(labels))
    first_of_text: dict[str, TeacherRecord] = {}  # insertion order = sample order: the lowest stays main
    for i in agreeing:
        first_of_text.setdefault((ok[i].rationale or "").strip(), ok[i])
    chosen = list(first_of_text.values())
    return TeacherOutput(example, chosen[0].raw or "", _parsed(chosen[0], label), sample_labels=labels,
                         extra=tuple(_parsed(r, label) for r in chosen[1:]))


def teacher_from_store(path: str, examples: list[Example], file_examples: list[Example] | None = None,
                       *, require_all: bool = True, reading: TeacherReading | None = None) -> list[TeacherOutput]:
    """Aligns a teacher store to `examples` by id (see the module docstring for the rule).

    `file_examples` is the whole source split the store was written for (default `examples`).
    A record whose id is not in it raises DataError naming the line, unless the record says it
    belongs to another (known) split; such records are counted and logged; an unknown split
    value is an error. With `require_all`, an example without a record raises too (a teacher
    file that does not match its inputs); otherwise it is left out of the result.
    """
    reading = reading or TeacherReading()
    if not os.path.isfile(path):
        raise DataError(path, None, None, "file not found" if not os.path.exists(path) else "not a file")
    contents = read_store(path)
    contents.warn_torn("tasks")
    records = select_group(contents, reading.teacher, reading.prompt_hash)
    by_id = {e.id: e for e in examples}
    pool = file_examples if file_examples is not None else examples
    known = {e.id for e in pool}
    file_split = pool[0].split if pool else None
    samples: dict[str, list[TeacherRecord]] = collections.defaultdict(list)
    other_split = collections.Counter()
    for record in records:
        line = contents.line_of.get(record.key)
        if record.id not in known:
            split = canonical_split_or_none(record.split) if record.split else None
            if record.split and split is None:
                raise DataError(path, line, "split", f"{record.split!r} is not a split (train, validation, test)")
            if split is not None and split != file_split:
                other_split[split] += 1
                continue  # a record of another split in a shared store
            raise DataError(path, line, "id", f"{record.id!r} is not an example of the "
                            f"{file_split} split ({len(known)} examples)")
        if record.id in by_id:
            samples[record.id].append(record)
    if other_split:
        log.info("%s: %s records of other splits not used for %s", path, dict(other_split), file_split)
    missing = [e.id for e in examples if e.id not in samples]
    if missing and require_all:
        raise DataError(path, None, "id", f"{len(samples)} records for {len(examples)} inputs; "
                        f"{len(missing)} examples have no record (first: {missing[0]!r})")
    return [combine(by_id[i], sorted(samples[i], key=lambda r: r.sample), reading.samples)
            for i in by_id if i in samples]


def agreement(outputs: Sequence[TeacherOutput]) -> dict:
    """How often an example's ok samples agree, and the vote's accuracy against gold."""
    several = [o for o in outputs if len(o.sample_labels) >= 2]
    shares, unanimous, hits, judged = [], 0, 0, 0
    for o in outputs:
        label, agreeing = majority(o.example.dataset, list(o.sample_labels))
        if len(o.sample_labels) >= 2:
            shares.append(len(agreeing) / len(o.sample_labels))
            unanimous += len(agreeing) == len(o.sample_labels)
        if label is not None and o.example.gold is not None:
            judged += 1
            hits += metrics.labels_equal(o.example.dataset, o.example.gold, label)
    return {"examples_with_several_ok_samples": len(several),
            "sample_agreement": round(100.0 * sum(shares) / len(shares), 2) if shares else None,
            "samples_unanimous": round(100.0 * unanimous / len(several), 2) if several else None,
            "vote_label_accuracy": round(100.0 * hits / judged, 2) if judged else None}

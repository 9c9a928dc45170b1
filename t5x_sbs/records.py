"""The teacher record: the only contract between the teacher and the tasks.

One JSON object per line in a teacher store (JSONL). Writers (the Gemini, replay and
scripted teachers) produce `TeacherRecord`s; readers (SeqIO tasks, data-report, the
ledger) load them with `read_records`, which names the file, line and field of any
malformed record instead of dropping it.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Iterator

from t5x_sbs.names import STATUSES

USAGE_FIELDS = ("prompt", "candidates", "cached", "thoughts", "total")


class InputError(ValueError):
    """Bad input; the message names the file, the line (when known) and the field."""

    def __init__(self, path: str | os.PathLike, line: int | None, field: str | None, problem: str):
        where = os.fspath(path) + (f":{line}" if line else "") + (f": field {field!r}" if field else "")
        super().__init__(f"{where}: {problem}")
        self.path, self.line, self.field = os.fspath(path), line, field


class RecordError(InputError):
    """A malformed teacher record."""


def iter_jsonl(path: str | os.PathLike, error: type[InputError] = InputError) -> Iterator[tuple[int, Any]]:
    """(line number, decoded value) for every non-blank line; invalid JSON raises `error`."""
    if os.path.isdir(path):
        raise error(path, None, None, "is a directory, not a JSONL file")
    with open(path, "rb") as f:
        for line_no, data in enumerate(f, start=1):
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as e:
                raise error(path, line_no, None, f"not UTF-8 text ({e.reason} at column {e.start + 1})") from None
            if not text.strip():
                continue
            try:
                yield line_no, json.loads(text)
            except json.JSONDecodeError as e:
                raise error(path, line_no, None, f"invalid JSON ({e.msg} at column {e.colno})") from None


@dataclasses.dataclass
class TeacherRecord:
    """One teacher answer for one example (one sample of it)."""

    id: str                      # stable example id from the source (line/index or own id)
    dataset: str
    split: str
    input: dict[str, Any]        # the fields of the example the prompt used
    gold: str | None             # gold label where the dataset has one
    rationale: str | None
    label: str | None
    status: str                  # one of names.STATUSES
    raw: str | None = None       # the teacher's raw text, kept for unparseable outputs
    teacher: str = ""            # "backend:model", e.g. "gemini:gemini-2.5-flash", "replay:palm-540b"
    prompt_hash: str = ""
    usage: dict[str, int] = dataclasses.field(default_factory=dict)
    error: str | None = None
    sample: int = 0              # sample index, for several samples per example
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # feedback rounds, cost, ...

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} not in {STATUSES}")
        if self.status == "ok" and (not self.label or self.rationale is None):
            raise ValueError("an 'ok' record needs a non-empty label and a rationale")

    @property
    def key(self) -> tuple[str, str, str, int]:
        """What makes a request unique: (example id, teacher, prompt hash, sample)."""
        return (self.id, self.teacher, self.prompt_hash, self.sample)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False, sort_keys=True)


_REQUIRED = ("id", "input", "rationale", "label", "status")
_FIELDS = {f.name for f in dataclasses.fields(TeacherRecord)}


def record_from_dict(obj: Any, path: str = "<dict>", line: int = 0) -> TeacherRecord:
    """Validates one decoded JSON object; raises RecordError naming the bad field."""
    if not isinstance(obj, dict):
        raise RecordError(path, line, None, f"expected a JSON object, got {type(obj).__name__}")
    for name in _REQUIRED:
        if name not in obj:
            raise RecordError(path, line, name, "missing")
    if not isinstance(obj["input"], dict):
        raise RecordError(path, line, "input", "must be an object of input fields")
    if obj["status"] not in STATUSES:
        raise RecordError(path, line, "status", f"{obj['status']!r} is not one of {STATUSES}")
    if obj["status"] == "ok":
        for name in ("label", "rationale"):
            if not isinstance(obj[name], str) or (name == "label" and not obj[name].strip()):
                raise RecordError(path, line, name, "an 'ok' record needs a non-empty string")
    unknown = set(obj) - _FIELDS
    known = {k: v for k, v in obj.items() if k in _FIELDS}
    known.setdefault("dataset", "")
    known.setdefault("split", "")
    known.setdefault("gold", None)
    if unknown:  # keep what we do not know rather than lose it
        known.setdefault("extra", {}).update({k: obj[k] for k in unknown})
    known["id"] = str(known["id"])
    return TeacherRecord(**known)


def read_records(path: str | os.PathLike) -> Iterator[TeacherRecord]:
    """Yields the records of a JSONL store, failing loudly on the first bad line.

    A torn last line (no trailing newline, invalid JSON) is what a killed writer leaves;
    it is reported like any other bad line: callers that resume use `store` helpers.
    """
    path = os.fspath(path)
    for line_no, obj in iter_jsonl(path, RecordError):
        yield record_from_dict(obj, path, line_no)


@dataclasses.dataclass(frozen=True)
class Example:
    """One source example, as every stage sees it (readers live in t5x_sbs.data.sources).

    `text` is the formatted model input without any task prefix (e.g. CQA's
    "question\\nAnswer Choices:\\n(a) ..."); the teacher prompts with it and the student
    reads it behind the label or rationale prefix.
    """

    id: str                       # stable: the dataset's own id, else "<split>-<index>"
    dataset: str
    split: str
    text: str
    input: dict[str, Any]         # raw input fields
    gold: str | None              # normalised gold label, None when the split has none

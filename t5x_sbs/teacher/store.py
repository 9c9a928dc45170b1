"""The append-only JSONL teacher store: one `TeacherRecord` per line, resumable, one writer.

While a run goes, every finished example is appended and flushed at once (completion
order), so a crash or SIGKILL loses at most the line being written. A writer holds an
exclusive lock (`<store>.lock`, fcntl, released by the kernel even on SIGKILL) for its whole
run: a second writer fails at once naming the store and the holder, instead of one run's
end-of-run rewrite replacing lines the other still appends.

The reading rule, the same for every reader (the teacher's resume, the tasks, data-report,
the ledger; see `read_store`): records are keyed by (example id, teacher, prompt hash,
sample); for one key an `ok` record beats a non-ok one, otherwise the later line wins (a
`--retry-failed` answer supersedes the failure it replaces). A torn last line (what a killed
writer leaves) is counted and named; the teacher's resume cuts it off. A malformed line
anywhere else is an error naming the file and line: records are never silently dropped.

When a run completes, `canonicalize` rewrites the file atomically (temp file + rename)
with one line per key in a fixed order, so an interrupted-and-resumed run ends with the
same bytes as an uninterrupted one.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import socket
import time
from typing import Callable, Iterable, Iterator

from t5x_sbs.records import InputError, RecordError, TeacherRecord, record_from_dict

Key = tuple[str, str, str, int]
Group = tuple[str, str]  # (teacher, prompt hash)
log = logging.getLogger(__name__)


class StoreError(InputError):
    """A store that cannot be read or written as asked; names the store."""


class StoreLockedError(StoreError):
    """Another process holds the store's writer lock."""


@dataclasses.dataclass
class StoreContents:
    """What a store holds under the reading rule."""

    path: str
    records: dict[Key, TeacherRecord]
    lines: int = 0             # record lines read
    replaced: int = 0          # lines that lost to another line of the same key
    torn_line: int | None = None  # line number of a torn (unterminated, invalid) last line
    good_bytes: int = 0        # bytes up to the end of the last whole line
    line_of: dict[Key, int] = dataclasses.field(default_factory=dict)  # the kept record's line

    def groups(self) -> dict[Group, dict[str, int]]:
        """(teacher, prompt hash) -> {"records": n, "ok": n} of the kept records."""
        out: dict[Group, dict[str, int]] = {}
        for r in self.records.values():
            counts = out.setdefault((r.teacher, r.prompt_hash), {"records": 0, "ok": 0})
            counts["records"] += 1
            counts["ok"] += r.status == "ok"
        return out

    def warn_torn(self, reader: str) -> None:
        if self.torn_line is not None:
            log.warning("%s: %s:%d is a torn last line (an interrupted write), not read; "
                        "the teacher's resume repairs it", reader, self.path, self.torn_line)


def wins(new: TeacherRecord, old: TeacherRecord) -> bool:
    """The reading rule for two lines of one key: ok beats non-ok, else the later line."""
    if (new.status == "ok") != (old.status == "ok"):
        return new.status == "ok"
    return True


def _lines(path: str) -> Iterator[tuple[int, bytes, bool]]:
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    for line_no, line in enumerate(lines, start=1):
        yield line_no, line, line_no == len(lines)


def read_store(path: str | os.PathLike) -> StoreContents:
    """Every record of a store by the reading rule (see the module docstring)."""
    path = os.fspath(path)
    contents = StoreContents(path, {})
    if not os.path.exists(path):
        return contents
    if os.path.isdir(path):
        raise StoreError(path, None, None, "is a directory, not a teacher store (JSONL file)")
    for line_no, line, is_tail in _lines(path):
        if not line.strip():
            contents.good_bytes += len(line) + (0 if is_tail else 1)
            continue
        try:
            obj = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError as e:
            if is_tail:  # a write cut inside a multi-byte character
                contents.torn_line = line_no
                break
            raise RecordError(path, line_no, None, f"not UTF-8 text ({e.reason} at column {e.start + 1})") from None
        except json.JSONDecodeError as e:
            if is_tail:  # no newline after it: an interrupted write
                contents.torn_line = line_no
                break
            raise RecordError(path, line_no, None, f"invalid JSON ({e.msg} at column {e.colno})") from None
        record = record_from_dict(obj, path, line_no)
        contents.lines += 1
        old = contents.records.get(record.key)
        if old is not None:
            contents.replaced += 1
        if old is None or wins(record, old):
            contents.records[record.key] = record
            contents.line_of[record.key] = line_no
        # A whole JSON object is never a prefix of another line: a valid tail is complete.
        contents.good_bytes += len(line) + (0 if is_tail else 1)
    return contents


def select_group(contents: StoreContents, teacher: str | None = None,
                 prompt_hash: str | None = None) -> list[TeacherRecord]:
    """The records of one (teacher, prompt hash) group. A store holding several groups must be
    read with `teacher` and/or `prompt_hash` (a prefix is enough) naming one; otherwise the
    error lists what it holds, with counts."""
    groups = contents.groups()
    chosen = [g for g in groups if (teacher is None or g[0] == teacher)
              and (prompt_hash is None or g[1].startswith(prompt_hash))]
    if len(chosen) > 1 or (not chosen and (teacher or prompt_hash)):
        held = "; ".join(f"teacher {t!r} prompt_hash {h!r}: {c['records']} records, {c['ok']} ok"
                         for (t, h), c in sorted(groups.items()))
        asked = f" matching teacher={teacher!r} prompt_hash={prompt_hash!r}" if (teacher or prompt_hash) else ""
        problem = (f"holds {len(chosen)} (teacher, prompt) groups{asked}" if chosen
                   else f"holds no records{asked}")
        raise StoreError(contents.path, None, "teacher/prompt_hash",
                         f"{problem} ({held}); choose one with gin tasks.config.teacher_reading.teacher / "
                         ".prompt_hash or the command's --teacher_name / --prompt_hash flags")
    return [r for r in contents.records.values() if chosen and (r.teacher, r.prompt_hash) == chosen[0]]


class TeacherStore:
    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self._file = None
        self._lock_fd: int | None = None
        self.last_read: StoreContents | None = None

    def load(self, repair: bool = True) -> dict[Key, TeacherRecord]:
        """The records per key by the reading rule. With `repair`, a torn last line is cut off
        the file (only a writer holding the lock may repair)."""
        contents = self.last_read = read_store(self.path)
        if not repair:
            contents.warn_torn("store")
            return contents.records
        size = os.path.getsize(self.path) if os.path.exists(self.path) else 0
        if contents.good_bytes < size:
            log.warning("%s: cutting off a torn last line %d (an interrupted write); it is asked again",
                        self.path, contents.torn_line)
            with open(self.path, "r+b") as f:
                f.truncate(contents.good_bytes)
        elif size:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                ends_with_newline = f.read(1) == b"\n"
            if not ends_with_newline:
                with open(self.path, "ab") as f:
                    f.write(b"\n")
        return contents.records

    # -- the writer lock ------------------------------------------------------------------
    @contextlib.contextmanager
    def writing(self) -> Iterator["TeacherStore"]:
        """Holds the exclusive writer lock for the block, after checking the folder and the file
        are writable (before any paid call)."""
        self.acquire()
        try:
            yield self
        finally:
            self.release()

    def acquire(self) -> None:
        folder = os.path.dirname(os.path.abspath(self.path))
        lock_path = self.path + ".lock"
        try:
            os.makedirs(folder, exist_ok=True)
            if os.path.isdir(self.path):
                raise StoreError(self.path, None, None, "is a directory, not a teacher store (JSONL file)")
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise StoreError(self.path, None, None, f"the store's folder is not writable ({e.strerror}: "
                             f"{e.filename or folder})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "unknown"
            os.close(fd)
            raise StoreLockedError(self.path, None, None, f"another writer holds {lock_path} ({holder}); "
                                   "wait for it to finish or write to another --out") from None
        self._lock_fd = fd
        try:
            self._check_writable(folder)
        except BaseException:
            self.release()
            raise
        holder = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "since": time.strftime("%Y-%m-%dT%H:%M:%S")})
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.encode() + b"\n", 0)

    def _check_writable(self, folder: str) -> None:
        """A probe write of the file the end-of-run rewrite needs, and of the store itself."""
        probe = self.path + ".tmp"
        try:
            with open(probe, "w", encoding="utf-8") as f:
                f.write("")
            os.remove(probe)
            if os.path.exists(self.path):
                with open(self.path, "ab"):
                    pass
        except OSError as e:
            raise StoreError(self.path, None, None, f"not writable ({e.strerror}: {e.filename or folder})") from None

    def release(self) -> None:
        self.close()
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- writing ---------------------------------------------------------------------------
    def append(self, record: TeacherRecord) -> None:
        """Writes one line and flushes it to the OS, so a killed process keeps it."""
        if self._file is None:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")
        self._file.write(record.to_json() + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def canonicalize(self, order: Callable[[TeacherRecord], tuple]) -> int:
        """Rewrites the store with one record per key (the reading rule), sorted by `order`;
        returns the number of lines. Atomic: a crash leaves either the old or the new file."""
        self.close()
        records = sorted(self.load(repair=False).values(), key=order)
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            for record in records:
                f.write(record.to_json() + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        return len(records)


def example_order(example_ids: Iterable[str]) -> Callable[[TeacherRecord], tuple]:
    """Sort key: records of known examples in source order, then any others by key."""
    position = {example_id: i for i, example_id in enumerate(example_ids)}
    far = len(position)

    def key(record: TeacherRecord) -> tuple:
        return (record.teacher, record.prompt_hash, position.get(record.id, far), record.id, record.sample)

    return key

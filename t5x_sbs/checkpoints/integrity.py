"""Checkpoints that prove themselves: the commit record, its checksums, and the cleanup of torn steps.

Our commit record (`t5x_sbs_commit.json`, written after Orbax finalised a step, off the training
thread) lists every file of the step with its size and CRC-32 (zlib). Listing steps checks
sizes (cheap: truncation, missing files); restoring a step verifies every checksum first, so
bytes flipped inside an array file (size unchanged) are found before they reach the params.
A step Orbax finalised without a record yet (a process killed in between) counts as complete,
unverified. Torn steps (set aside as `<step>.torn-*`) and Orbax's `*.orbax-checkpoint-tmp*`
leftovers are removed by `remove_leftovers`, which the keep policy runs after each save.
"""
from __future__ import annotations

import json
import logging
import os
import pathlib
import shutil
import time
import zlib

log = logging.getLogger(__name__)

COMMIT_FILE = "t5x_sbs_commit.json"
ORBAX_STEP_METADATA = "_CHECKPOINT_METADATA"
TORN_MARK = ".torn-"
ORBAX_TMP_MARK = ".orbax-checkpoint-tmp"
_CHUNK = 1 << 20


class CheckpointError(RuntimeError):
    """No usable checkpoint, or a save that failed; the message says which step and why."""


def file_crc32(path: pathlib.Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            crc = zlib.crc32(chunk, crc)
    return crc


def _files(step_dir: pathlib.Path) -> list[pathlib.Path]:
    return [p for p in sorted(step_dir.rglob("*")) if p.is_file() and p.name not in (COMMIT_FILE, COMMIT_FILE + ".tmp")]


def write_commit_record(step_dir: str | os.PathLike) -> None:
    """Records every file of a finalised step with its size and CRC-32 (atomic, primary only)."""
    step_dir = pathlib.Path(step_dir)
    files = {str(p.relative_to(step_dir)): {"size": p.stat().st_size, "crc32": file_crc32(p)}
             for p in _files(step_dir)}
    tmp = step_dir / (COMMIT_FILE + ".tmp")
    tmp.write_text(json.dumps({"files": files, "checksum": "crc32", "time": time.time()}, indent=0))
    os.replace(tmp, step_dir / COMMIT_FILE)


def _entry(value) -> tuple[int, int | None]:
    """(size, crc32) of a record entry; records written before checksums hold a bare size."""
    if isinstance(value, dict):
        return int(value["size"]), value.get("crc32")
    return int(value), None


def incomplete_reason(step_dir: str | os.PathLike, *, verify: bool = False) -> str | None:
    """Why a step directory is not a complete checkpoint, or None if it is. With `verify`, every
    file's checksum is compared to the commit record's as well (reads the whole step)."""
    step_dir = pathlib.Path(step_dir)
    if not step_dir.is_dir():
        return "not a directory"
    if not (step_dir / ORBAX_STEP_METADATA).is_file():
        return f"{ORBAX_STEP_METADATA} missing (save never finalised)"
    if not (step_dir / "state" / "_METADATA").is_file():
        return "state/_METADATA missing"
    commit = step_dir / COMMIT_FILE
    if not commit.is_file():
        return None  # finalised by Orbax, commit record not yet written (or a foreign checkpoint)
    try:
        files = {rel: _entry(v) for rel, v in json.loads(commit.read_text())["files"].items()}
    except (ValueError, KeyError, TypeError) as e:
        return f"{COMMIT_FILE} unreadable: {e}"
    for rel, (size, crc) in files.items():
        path = step_dir / rel
        if not path.is_file():
            return f"{rel} missing"
        if path.stat().st_size != size:
            return f"{rel} has {path.stat().st_size} bytes, expected {size} (truncated?)"
        if verify and crc is not None and file_crc32(path) != crc:
            return f"{rel} fails its CRC-32 check (corrupted bytes)"
    return None


def int_steps(directory: pathlib.Path) -> list[int]:
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit() and p.is_dir())


_WARNED: set = set()  # (step dir, reason) already logged


def complete_steps(directory: str | os.PathLike) -> list[int]:
    """The complete checkpoint steps under `directory`, ascending; torn ones are logged once."""
    directory = pathlib.Path(directory)
    steps = []
    for step in int_steps(directory):
        reason = incomplete_reason(directory / str(step))
        if reason is None:
            steps.append(step)
        elif (directory / str(step), reason) not in _WARNED:
            _WARNED.add((directory / str(step), reason))
            log.warning("skipping torn checkpoint %s: %s", directory / str(step), reason)
    return steps


def set_aside(step_dir: pathlib.Path, why: str) -> pathlib.Path:
    """Moves a torn or corrupt step out of the way (removed later by `remove_leftovers`)."""
    aside = step_dir.with_name(f"{step_dir.name}{TORN_MARK}{int(time.time() * 1000)}")
    log.warning("moving checkpoint %s aside to %s: %s", step_dir, aside.name, why)
    os.replace(step_dir, aside)
    return aside


def remove_leftovers(directory: str | os.PathLike, *, keep_tmp_of: set[int] = frozenset()) -> list[str]:
    """Deletes set-aside torn steps and Orbax tmp dirs (but not those of saves still running,
    `keep_tmp_of`); returns the names removed."""
    directory = pathlib.Path(directory)
    removed = []
    if not directory.is_dir():
        return removed
    for p in directory.iterdir():
        head = p.name.split(".", 1)[0]
        running = head.isdigit() and int(head) in keep_tmp_of
        if p.is_dir() and (TORN_MARK in p.name or (ORBAX_TMP_MARK in p.name and not running)):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p.name)
    if removed:
        log.info("removed torn/temporary checkpoint folders under %s: %s", directory, sorted(removed))
    return removed

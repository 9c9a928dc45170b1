"""Progress a person can read: a tqdm bar on a terminal, whole lines in a file or a CI log.

On a terminal tqdm redraws one line with carriage returns; written to a file, that becomes one
line of thousands of `\\r` updates. When the stream is not a terminal, `progress` returns a
`LineProgress` instead: the same `update` / `set_postfix` / `close` calls, printing one line of
tqdm's own meter (count, elapsed < remaining, rate, postfix) at the start, then at most every
`every_s` seconds (env T5X_SBS_PROGRESS_SECONDS, default 30), and at the end.
"""
from __future__ import annotations

import os
import sys
import time
from typing import IO, Any, Mapping

import tqdm

EVERY_S_ENV = "T5X_SBS_PROGRESS_SECONDS"
DEFAULT_EVERY_S = 30.0
LINE_FORMAT = "{desc}: {n_fmt}/{total_fmt} {unit} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"


def is_terminal(stream: IO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress(total: int, *, desc: str, unit: str = "it", initial: int = 0, disable: bool = False,
             file: IO | None = None, every_s: float | None = None, mininterval: float = 0.1):
    """A tqdm bar when `file` (default stderr) is a terminal, else a `LineProgress`."""
    file = file if file is not None else sys.stderr
    if disable or is_terminal(file):
        return tqdm.tqdm(total=total, initial=initial, desc=desc, unit=unit, file=file, disable=disable,
                         mininterval=mininterval)
    if every_s is None:
        every_s = float(os.environ.get(EVERY_S_ENV, DEFAULT_EVERY_S))
    return LineProgress(total, desc=desc, unit=unit, initial=initial, file=file, every_s=every_s)


class LineProgress:
    """tqdm's update/set_postfix/close, written as whole lines at most every `every_s` seconds."""

    def __init__(self, total: int, *, desc: str, unit: str, initial: int, file: IO, every_s: float):
        self.total, self.desc, self.unit, self.file, self.every_s = total, desc, unit, file, every_s
        self.n = self.initial = initial
        self.postfix = ""
        self.closed = False
        self._start = self._last_line = time.monotonic()
        self._print()

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self._last_line >= self.every_s:
            self._print()

    def set_postfix(self, ordered_dict: Mapping[str, Any] | None = None, refresh: bool = True, **kwargs) -> None:
        del refresh  # a line shows the postfix when it is next printed
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._print()

    def _print(self) -> None:
        now = time.monotonic()
        line = tqdm.tqdm.format_meter(self.n, self.total, now - self._start, prefix=self.desc, unit=self.unit,
                                      postfix=self.postfix, bar_format=LINE_FORMAT, initial=self.initial)
        print(line, file=self.file, flush=True)
        self._last_line = now

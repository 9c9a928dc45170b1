"""Expected user errors end as one line naming file, line and field, with exit code 2.

`t5x-sbs` (every subcommand) and `python -m t5x_sbs.main` run through `report_errors`: a bad
path, bad JSON or encoding, an unknown name, a bad gin binding, a bad checkpoint or
safetensors file... prints `PROG: <what and where>` on stderr and returns 2. With `--debug`
the exception propagates with its traceback (for bug reports).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tokenize
from typing import Callable

from safetensors import SafetensorError

from t5x_sbs.records import InputError

DEBUG_FLAG = "--debug"


def _user_error_types() -> tuple[type[BaseException], ...]:
    # SafetensorError: a truncated or garbled .safetensors file; TokenError: gin's parser on an
    # unclosed bracket.
    return (InputError, OSError, ValueError, KeyError, LookupError, SafetensorError, tokenize.TokenError)


def describe(error: BaseException) -> str:
    """One line: what went wrong and where (file, line, field when known)."""
    if isinstance(error, InputError):
        text = str(error)
    elif isinstance(error, json.JSONDecodeError):
        text = f"invalid JSON at line {error.lineno} column {error.colno}: {error.msg}"
    elif isinstance(error, UnicodeDecodeError):
        text = f"not UTF-8 text ({error.reason} at byte {error.start})"
    elif isinstance(error, OSError) and error.filename:
        text = f"{os.fspath(error.filename)}: {error.strerror or error}"
    elif isinstance(error, KeyError):
        text = f"{type(error).__name__}: {error.args[0] if error.args else error}"
    else:
        text = f"{type(error).__name__}: {error}" if not isinstance(error, ValueError) else str(error)
    return " | ".join(line.strip() for line in text.splitlines() if line.strip()) or type(error).__name__


def pop_debug(argv: list[str]) -> tuple[list[str], bool]:
    """argv without `--debug`, and whether it was there."""
    return [a for a in argv if a != DEBUG_FLAG], DEBUG_FLAG in argv


def report_errors(prog: str, fn: Callable[[], int | None], *, debug: bool = False) -> int:
    """Runs `fn`; an expected user error becomes one line on stderr and exit code 2."""
    try:
        return int(fn() or 0)
    except SystemExit as e:
        if isinstance(e.code, str):  # SystemExit("message"): our modules' own one-line errors
            if debug:
                raise
            print(e.code, file=sys.stderr)
            return 2
        raise
    except _user_error_types() as e:
        if debug:
            raise
        print(f"{prog}: {describe(e)}  (--debug shows the traceback)", file=sys.stderr)
        return 2


# ----------------------------------------------------------------------------- command-line numbers
# argparse `type=` checkers: a bad number stops the command when it is parsed, before any work.
class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse's errors as one line (no usage block): `PROG: error: argument --x: ...`."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}  (--help lists the arguments)\n")


def _integer(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= {least}, got {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be an integer >= {least}, got {value}")
    return value


def positive_int(text: str) -> int:
    return _integer(text, 1)


def non_negative_int(text: str) -> int:
    return _integer(text, 0)


def _number(text: str, *, strictly_positive: bool) -> float:
    bound = "> 0" if strictly_positive else ">= 0"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number {bound}, got {text!r}") from None
    if not math.isfinite(value) or value < 0 or (strictly_positive and value == 0):
        raise argparse.ArgumentTypeError(f"must be a finite number {bound}, got {text}")
    return value


def positive_float(text: str) -> float:
    return _number(text, strictly_positive=True)


def non_negative_float(text: str) -> float:
    return _number(text, strictly_positive=False)


def int_list(text: str) -> str:
    """A comma-separated list of distinct integers >= 0 (e.g. seeds), returned as `a,b,c`."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items or not all(item.isascii() and item.isdigit() for item in items):
        raise argparse.ArgumentTypeError(f"must be comma-separated integers >= 0, e.g. 0,1,2; got {text!r}")
    values = [int(item) for item in items]
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"lists a value twice: {text!r}")
    return ",".join(str(v) for v in values)

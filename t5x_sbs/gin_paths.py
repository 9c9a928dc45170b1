"""Where the shipped gin files and sweep configs are, in a checkout or an installed wheel.

In a checkout they are the layout's top-level `gin/` and `configs/` folders beside `t5x_sbs/`; an
installed wheel carries them as package data inside the package (`t5x_sbs/gin`, `t5x_sbs/configs`,
see setup.py). Either way a user writes `gin/models/t5_1_1/base.gin` or
`configs/sweeps/arith_cpu.json`, and `include 'gin/...'` lines resolve, because the directory that
holds both folders is on gin's search path.
"""
from __future__ import annotations

import os
import pathlib

PACKAGE_DIR = pathlib.Path(__file__).resolve().parent
# One file every complete copy has: how the root is recognised.
_MARKER = pathlib.Path("gin", "runs", "finetune.gin")


def shipped_root() -> pathlib.Path:
    """The directory holding the shipped `gin/` and `configs/`: the package (wheel) or the checkout."""
    for root in (PACKAGE_DIR, PACKAGE_DIR.parent):
        if (root / _MARKER).is_file():
            return root
    raise FileNotFoundError(f"the shipped gin files are missing: no {_MARKER} under {PACKAGE_DIR} or its parent "
                            "(a broken install? reinstall t5x-sbs)")


def shipped(relative: str | os.PathLike) -> str:
    """A shipped file's path, e.g. shipped('gin/runs/demo.gin')."""
    return str(shipped_root() / relative)


def find(path: str | os.PathLike, search_paths: list[str] | tuple[str, ...] = ()) -> str | None:
    """`path` as given (absolute or from the working directory), else under each search path and
    then the shipped root; None when nowhere."""
    roots = ["", *search_paths, str(shipped_root())]
    return next((os.path.join(r, path) for r in roots if os.path.exists(os.path.join(r, path))), None)

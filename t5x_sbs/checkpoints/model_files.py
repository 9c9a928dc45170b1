"""The model config and vocabulary kept beside checkpoints: MODEL_DIR/config.json (the run's
T5Config) and MODEL_DIR/spiece.model. Found from MODEL_DIR, a step dir, best/ or best/<step>, so
every reader of a checkpoint (eval, export, INITIAL_CHECKPOINT_PATH) knows what it holds."""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
from typing import Any

import numpy as np

from t5x_sbs.models.config import T5Config

CONFIG_FILE = "config.json"
VOCAB_FILE = "spiece.model"


def save_model_config(model_dir: str | os.PathLike, config: Any,
                      vocabulary: str | os.PathLike | None = None) -> pathlib.Path:
    """Writes a (dataclass) model config as MODEL_DIR/config.json, and copies the SentencePiece
    model to MODEL_DIR/spiece.model when given (HF export ships it). The trainer calls this once."""
    model_dir = pathlib.Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    if vocabulary is not None:
        shutil.copyfile(vocabulary, model_dir / VOCAB_FILE)
    fields = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    fields = {k: jsonable(v) for k, v in fields.items()}
    path = model_dir / CONFIG_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(fields, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def jsonable(value: Any) -> Any:
    """Config values as JSON (dtypes by name)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    try:  # numpy / jax dtypes and scalar types
        return np.dtype(value).name
    except TypeError:
        return str(value)


def find_model_config(path: str | os.PathLike) -> pathlib.Path:
    """config.json at `path` or up to three parents (a step dir, best/, best/<step>)."""
    path = pathlib.Path(path).resolve()
    for candidate in [path, *list(path.parents)[:3]]:
        if (candidate / CONFIG_FILE).is_file():
            return candidate / CONFIG_FILE
    raise FileNotFoundError(
        f"no {CONFIG_FILE} at {path} or its parents: the trainer writes it with save_model_config"
    )


def initial_checkpoint_vocabulary(path: str | None) -> str | None:
    """The spiece.model an INITIAL_CHECKPOINT_PATH comes with: in an HF dir, or beside our
    checkpoint's config.json (MODEL_DIR, a step dir, best/<step>); None when there is none."""
    if not path:
        return None
    try:
        home = os.path.dirname(find_model_config(path))
    except FileNotFoundError:
        return None
    candidate = os.path.join(home, VOCAB_FILE)
    return candidate if os.path.isfile(candidate) else None


def initial_checkpoint_vocab_rows(path: str | None) -> int | None:
    """The embedding rows an INITIAL_CHECKPOINT_PATH holds (its config.json's `vocab_size`: a
    Hugging Face dir's or the T5Config saved beside ours), which the run must bind as
    T5Config.vocab_size to load it; None when there is no config. A real T5's 32,000 pieces sit in
    32,128 rows (pieces + 100 sentinels, padded), so the rows cannot be read off the vocabulary."""
    if not path:
        return None
    try:
        file = find_model_config(path)
    except FileNotFoundError:
        return None
    rows = json.loads(file.read_text()).get("vocab_size")
    if not isinstance(rows, int) or rows <= 0:
        raise ValueError(f"{file}: field vocab_size is {rows!r}, not a positive integer")
    return rows


def load_model_config(path: str | os.PathLike):
    """The T5Config saved beside a checkpoint (MODEL_DIR, a step dir or best/)."""
    file = find_model_config(path)
    fields = json.loads(file.read_text())
    known = {f.name for f in dataclasses.fields(T5Config)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"{file}: unknown T5Config field(s) {unknown}")
    return T5Config(**fields)

"""INITIAL_CHECKPOINT_PATH: params from a Hugging Face T5 dir or one of our checkpoints."""
from __future__ import annotations

import os
import pathlib
from typing import Any

from t5x_sbs.checkpoints import resolve_step_dir, restore_step_dir
from t5x_sbs.convert import hf_import


def is_hf_dir(path: str | os.PathLike) -> bool:
    path = pathlib.Path(path)
    return (path / "config.json").is_file() and any(
        (path / name).is_file() for name in
        ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"))


def load_initial_params(path: str | os.PathLike, abstract_params: Any, model_config: Any = None) -> Any:
    """Params for INITIAL_CHECKPOINT_PATH: an HF T5 dir (config.json + weights), one of our
    MODEL_DIRs (latest complete step), its best/ or a step dir. Only params are read; they are
    placed on the shardings of `abstract_params` (bare params: token_embedder, encoder, ...).
    HF weights stream tensor by tensor; with `model_config`, an HF config whose shape-invisible
    fields (max distance, epsilon, ...) differ from the run's is refused."""
    path = pathlib.Path(path)
    if is_hf_dir(path):
        return hf_import.load_hf_params(path, abstract_params, model_config=model_config)
    params, _ = restore_step_dir(resolve_step_dir(path), abstract_params)
    return params

"""Import a Hugging Face T5 checkpoint directory: (T5Config, host params), or params streamed
straight onto a model's shardings.

Reads `config.json` plus `model.safetensors`, or sharded `model-*.safetensors` with
`model.safetensors.index.json` (all on one host). Every tensor is checked against the shape our
model expects; missing, unexpected or misshapen tensors raise an error naming the file and tensor.

Memory: tensors are read one at a time with `safe_open` (memory-mapped). `load_hf_t5` builds one
host copy of the params (scanned stacks are filled in place, never stacked a second time);
`load_hf_params` holds one parameter (one stacked array when scanned) on the host at a time and
places it onto its sharding before reading the next, so a large model is never held twice.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
import re
from typing import Any, Iterator

import jax
import numpy as np
from safetensors import SafetensorError, safe_open

from t5x_sbs.convert.hf_names import HF_ALIASES, TensorRule, hf_config_to_ours, tensor_rules
from t5x_sbs.models.config import T5Config
from t5x_sbs.models.info import param_shapes
from t5x_sbs.records import InputError

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
# HF ignores this tensor on load (decoder cross-attention has no relative bias).
HF_IGNORED = ("decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight",)
# Fields that change the computation but not any tensor shape: checked against a given model config.
SHAPELESS_FIELDS = ("relative_attention_max_distance", "layer_norm_epsilon", "feed_forward_proj",
                    "tie_word_embeddings")
_LAYER = re.compile(r"^layers_(\d+)$")


def _read_json(path: pathlib.Path) -> dict[str, Any]:
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found (expected a Hugging Face T5 checkpoint directory)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: line {e.lineno}: invalid JSON: {e.msg}") from e


def open_safetensors(path: pathlib.Path, framework: str):
    """`safe_open`, with a truncated or garbled file reported by its path (the library names none)."""
    try:
        return safe_open(str(path), framework=framework)
    except SafetensorError as e:
        raise InputError(path, None, None, f"not a readable safetensors file ({e})") from e


def tensor_files(directory: pathlib.Path) -> dict[str, pathlib.Path]:
    """HF tensor name -> the safetensors file holding it."""
    if (directory / INDEX_FILE).exists():
        index_path = directory / INDEX_FILE
        weight_map = _read_json(index_path).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ValueError(f"{index_path}: missing field 'weight_map'")
        files = {name: directory / file for name, file in weight_map.items()}
        for file in set(files.values()):
            if not file.exists():
                raise FileNotFoundError(f"{file}: listed in {index_path} but not found")
        return files
    single = directory / SINGLE_FILE
    if not single.exists():
        raise FileNotFoundError(f"{directory}: neither {SINGLE_FILE} nor {INDEX_FILE} found")
    with open_safetensors(single, "np") as f:
        return {name: single for name in f.keys()}


class _TensorReader:
    """Opens each shard once; reads on the host CPU (also bfloat16, via the flax loader)."""

    def __init__(self, files: dict[str, pathlib.Path]):
        self.files = files
        self._handles: dict[pathlib.Path, Any] = {}

    def __call__(self, name: str) -> np.ndarray:
        file = self.files[name]
        if file not in self._handles:
            self._handles[file] = open_safetensors(file, "flax")
        with jax.default_device(jax.devices("cpu")[0]):
            try:
                return np.asarray(self._handles[file].get_tensor(name))
            except SafetensorError as e:
                raise InputError(file, None, name, f"tensor not readable ({e})") from e


def _has_separate_lm_head(read: _TensorReader) -> bool:
    if "lm_head.weight" not in read.files:
        return False
    # transformers 5 may write lm_head even when tied: only a different tensor counts.
    return not np.array_equal(read("lm_head.weight"), read("shared.weight"))


@dataclasses.dataclass
class HFCheckpoint:
    """An opened, validated HF T5 directory: its config (ours) and a tensor-by-tensor reader."""

    directory: pathlib.Path
    config: T5Config
    read: _TensorReader

    @classmethod
    def open(cls, directory, **config_overrides) -> "HFCheckpoint":
        directory = pathlib.Path(directory)
        hf_config = _read_json(directory / "config.json")
        read = _TensorReader(tensor_files(directory))
        if "shared.weight" not in read.files:
            raise ValueError(f"{directory}: tensor 'shared.weight' not found in the checkpoint")
        config = hf_config_to_ours(hf_config, has_separate_lm_head=_has_separate_lm_head(read),
                                   source=str(directory / "config.json"), **config_overrides)
        checkpoint = cls(directory, config, read)
        checkpoint._check_names()
        return checkpoint

    def _check_names(self) -> None:
        rules = tensor_rules(self.config)
        missing = [r.hf_name for r in rules if r.hf_name not in self.read.files]
        if missing:
            raise ValueError(f"{self.directory}: tensors missing from the checkpoint: {missing[:8]}"
                             f"{' ...' if len(missing) > 8 else ''}")
        known = {r.hf_name for r in rules} | set(HF_ALIASES) | set(HF_IGNORED) | {"lm_head.weight"}
        unexpected = sorted(set(self.read.files) - known)
        if unexpected:
            raise ValueError(f"{self.directory}: tensors our {self.config.feed_forward_proj} T5 "
                             f"has no place for: {unexpected[:8]}")

    def _tensor(self, rule: TensorRule, expected_shape: tuple[int, ...], dtype) -> np.ndarray:
        value = rule.to_ours(self.read(rule.hf_name))
        if value.shape != tuple(expected_shape):
            raise ValueError(f"{self.read.files[rule.hf_name]}: tensor {rule.hf_name!r} gives shape "
                             f"{value.shape} for {'/'.join(rule.path)}, expected {tuple(expected_shape)}")
        return np.asarray(value, dtype)

    def leaves(self, scanned: bool, dtype=None) -> Iterator[tuple[tuple[str, ...], np.ndarray]]:
        """(our path, host array) one parameter at a time, in the unrolled or scanned layout.
        A scanned leaf is filled layer by layer into one preallocated [num_layers, ...] array."""
        dtype = dtype or self.config.weight_dtype
        expected = _flat_shapes(param_shapes(self.config.replace(scan_layers=False)))
        groups: dict[tuple[str, ...], list[TensorRule]] = {}
        for rule in tensor_rules(self.config):
            groups.setdefault(_scanned_path(rule.path) if scanned else rule.path, []).append(rule)
        for path, rules in groups.items():
            if len(rules) == 1 and path == rules[0].path:
                yield path, self._tensor(rules[0], expected[path], dtype)
                continue
            layer_shape = expected[rules[0].path]
            stacked = np.empty((len(rules),) + layer_shape, dtype)
            for rule in rules:  # rules come in layer order
                stacked[_layer_index(rule.path)] = self._tensor(rule, layer_shape, dtype)
            yield path, stacked


def _scanned_path(path: tuple[str, ...]) -> tuple[str, ...]:
    return (path[0], "layers", *path[2:]) if len(path) > 1 and _LAYER.match(path[1]) else path


def _layer_index(path: tuple[str, ...]) -> int:
    return int(_LAYER.match(path[1]).group(1))


def load_hf_t5(directory, **config_overrides) -> tuple[T5Config, dict]:
    """(config, params) for an HF T5 checkpoint directory; params in `config.param_dtype`, in the
    scanned layout when `scan_layers=True` is among the overrides (e.g. dtype="bfloat16")."""
    checkpoint = HFCheckpoint.open(directory, **config_overrides)
    params: dict = {}
    for path, value in checkpoint.leaves(scanned=checkpoint.config.scan_layers):
        _set(params, path, value)
    return checkpoint.config, params


def load_hf_params(directory, abstract_params: Any, model_config: T5Config | None = None) -> Any:
    """Params of an HF T5 directory placed on the shardings of `abstract_params` (a tree of
    jax.ShapeDtypeStruct with .sharding, unrolled or scanned), streamed one tensor at a time.
    With `model_config`, fields that no shape reveals (max distance, epsilon, ...) must match."""
    checkpoint = HFCheckpoint.open(directory)
    if model_config is not None:
        _check_same_architecture(checkpoint, model_config)
    targets = {tuple(k.key for k in p): a for p, a in jax.tree_util.tree_flatten_with_path(abstract_params)[0]}
    scanned = any(len(p) > 1 and p[1] == "layers" for p in targets)
    placed = {}
    for path, value in checkpoint.leaves(scanned=scanned):
        if path not in targets:
            raise ValueError(f"{checkpoint.directory}: parameter {'/'.join(path)} has no place in the model "
                             f"(HF config: {checkpoint.config.feed_forward_proj}, "
                             f"tie_word_embeddings={checkpoint.config.tie_word_embeddings})")
        target = targets[path]
        if value.shape != tuple(target.shape):
            raise ValueError(f"{checkpoint.directory}: {'/'.join(path)} has shape {value.shape}, "
                             f"the model expects {tuple(target.shape)} (config.json does not match the model)")
        value = value.astype(target.dtype, copy=False)
        placed[path] = jax.make_array_from_callback(value.shape, target.sharding, lambda index, v=value: v[index])
        del value  # only this parameter's device shards stay
    absent = sorted("/".join(p) for p in set(targets) - set(placed))
    if absent:
        raise ValueError(f"{checkpoint.directory}: the model has parameters the checkpoint lacks: {absent[:8]}")
    return jax.tree_util.tree_unflatten(jax.tree.structure(abstract_params), [placed[p] for p in targets])


def _check_same_architecture(checkpoint: HFCheckpoint, model_config: T5Config) -> None:
    for field in SHAPELESS_FIELDS:
        theirs, ours = getattr(checkpoint.config, field), getattr(model_config, field)
        if theirs != ours:
            raise ValueError(f"{checkpoint.directory / 'config.json'}: field {field!r} is {theirs!r}, "
                             f"the model has {ours!r}")


def _flat_shapes(tree) -> dict[tuple[str, ...], tuple[int, ...]]:
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {tuple(k.key for k in path): tuple(leaf.shape) for path, leaf in flat}


def _set(tree: dict, path: tuple[str, ...], value) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value

"""Our Orbax checkpoint → a Hugging Face T5 directory, streamed tensor by tensor.

Writes `config.json` (T5ForConditionalGeneration), `generation_config.json`, `model.safetensors`
(or `model-0000k-of-0000n.safetensors` + `model.safetensors.index.json` when larger than the shard
size), and `spiece.model` + `tokenizer_config.json` when a SentencePiece vocabulary is known.
Tensor names and layouts come from `hf_names.tensor_rules` (the importer uses the same rules).

Memory: one source tensor and at most one output shard (≤ `max_shard_bytes`) are held at a time,
so an xxl export never holds two copies of the model.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import pathlib
import shutil
from typing import Any

import ml_dtypes
import numpy as np
from safetensors.numpy import save_file
from sentencepiece import sentencepiece_model_pb2

from t5x_sbs import checkpoints
from t5x_sbs.checkpoints import model_files
from t5x_sbs.convert.hf_names import TensorRule, ours_to_hf_config, tensor_rules

log = logging.getLogger(__name__)

DTYPES = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16}
DEFAULT_SHARD_BYTES = 5 * 1024**3
VOCAB_FILE = model_files.VOCAB_FILE


@dataclasses.dataclass
class ExportSummary:
    out_dir: pathlib.Path
    step_dir: pathlib.Path
    files: list[str]
    num_tensors: int
    total_bytes: int


class _SourceParams:
    """Reads our params one tensor at a time; unrolled paths also resolve in a scanned layout
    (`encoder/layers/...` stacked on axis 0), keeping only the last stacked tensor cached."""

    def __init__(self, step_dir: pathlib.Path):
        self.step_dir = step_dir
        meta = checkpoints.state_metadata(step_dir)
        if "params" not in meta:
            raise ValueError(f"{step_dir}/state has no top-level 'params' (keys: {sorted(meta)})")
        self.shapes = {path: tuple(m.shape) for path, m in _flatten(meta["params"]).items()}
        self._cache: tuple[tuple, np.ndarray] | None = None

    def locate(self, path: tuple[str, ...]) -> tuple[tuple[str, ...], int | None]:
        if path in self.shapes:
            return path, None
        stack, layer, *rest = path
        if layer.startswith("layers_"):
            stacked = (stack, "layers", *rest)
            if stacked in self.shapes:
                return stacked, int(layer.split("_")[1])
        raise KeyError(f"{self.step_dir}: parameter {'/'.join(path)} is missing from the checkpoint")

    def read(self, path: tuple[str, ...]) -> np.ndarray:
        stored, index = self.locate(path)
        if self._cache is None or self._cache[0] != stored:
            self._cache = None  # drop the previous tensor before reading the next
            self._cache = (stored, checkpoints.read_state_leaf(self.step_dir, ("params",) + stored))
        array = self._cache[1]
        return array if index is None else array[index]

    def shape(self, path: tuple[str, ...]) -> tuple[int, ...]:
        stored, index = self.locate(path)
        return self.shapes[stored] if index is None else self.shapes[stored][1:]

    def used_paths(self, rules: list[TensorRule]) -> set[tuple[str, ...]]:
        return {self.locate(rule.path)[0] for rule in rules}


def _flatten(tree: Any, prefix: tuple = ()) -> dict[tuple[str, ...], Any]:
    if isinstance(tree, dict):
        out = {}
        for key, value in tree.items():
            out.update(_flatten(value, prefix + (str(key),)))
        return out
    return {prefix: tree}


def _plan_shards(rules, source: _SourceParams, itemsize: int, max_shard_bytes: int) -> list[list[TensorRule]]:
    shards: list[list[TensorRule]] = [[]]
    size = 0
    for rule in rules:
        nbytes = math.prod(source.shape(rule.path)) * itemsize
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(rule)
        size += nbytes
    return shards


def _check_coverage(rules, source: _SourceParams, config) -> None:
    """Every checkpoint parameter must be exported: extra ones mean a config mismatch."""
    for rule in rules:
        source.locate(rule.path)  # raises naming the missing parameter
    extra = sorted("/".join(p) for p in set(source.shapes) - source.used_paths(rules))
    if extra:
        raise ValueError(f"{source.step_dir}: parameters not in a T5 of this config "
                         f"(tie_word_embeddings={config.tie_word_embeddings}, "
                         f"feed_forward_proj={config.feed_forward_proj!r}): {extra[:5]}")


def _convert(rule: TensorRule, source: _SourceParams, dtype) -> np.ndarray:
    array = rule.to_hf(source.read(rule.path))
    return np.ascontiguousarray(array.astype(dtype))


def export_hf(source_path: str | os.PathLike, out_dir: str | os.PathLike, *, dtype: str = "float32",
              max_shard_bytes: int = DEFAULT_SHARD_BYTES, vocab: str | os.PathLike | None = None,
              require_vocab: bool = False, with_tokenizer: bool = True) -> ExportSummary:
    """Exports a MODEL_DIR (latest complete step), its best/ or a step dir to `out_dir`.
    `require_vocab`: fail (before writing) when no SentencePiece model is given or saved;
    `with_tokenizer=False`: weights and configs only."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: expected one of {sorted(DTYPES)}")
    step_dir = checkpoints.resolve_step_dir(source_path)
    config = model_files.load_model_config(step_dir)
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    source = _SourceParams(step_dir)
    rules = tensor_rules(config)
    _check_coverage(rules, source, config)
    vocab = (pathlib.Path(vocab) if vocab else find_vocab(step_dir)) if with_tokenizer else None
    if with_tokenizer and require_vocab and vocab is None:
        raise FileNotFoundError(
            f"no {VOCAB_FILE} beside {step_dir}'s config.json: pass --vocab SPM_PATH (the run's "
            "SentencePiece model) so the export loads in T5TokenizerFast, or --no-tokenizer")
    if vocab is not None:
        _check_vocab(vocab)
    np_dtype = np.dtype(DTYPES[dtype])
    shards = _plan_shards(rules, source, np_dtype.itemsize, max_shard_bytes)
    names = (["model.safetensors"] if len(shards) == 1 else
             [f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors" for k in range(len(shards))])
    weight_map, total = {}, 0
    for name, shard in zip(names, shards):
        tensors = {rule.hf_name: _convert(rule, source, np_dtype) for rule in shard}
        save_file(tensors, str(out_dir / name), metadata={"format": "pt"})
        total += sum(t.nbytes for t in tensors.values())
        weight_map.update({rule.hf_name: name for rule in shard})
        del tensors
    if len(shards) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    files = names + _write_configs(out_dir, config, dtype)
    files += _write_vocab(out_dir, step_dir, vocab) if with_tokenizer else []
    log.info("exported %s → %s (%d tensors, %d bytes)", step_dir, out_dir, len(rules), total)
    return ExportSummary(out_dir, step_dir, files, len(rules), total)


def _write_configs(out_dir: pathlib.Path, config, dtype: str) -> list[str]:
    hf_config = dict(ours_to_hf_config(config), torch_dtype=dtype)
    (out_dir / "config.json").write_text(json.dumps(hf_config, indent=2, sort_keys=True) + "\n")
    generation = {"decoder_start_token_id": config.decoder_start_token_id,
                  "eos_token_id": config.eos_token_id, "pad_token_id": config.pad_token_id}
    (out_dir / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    return ["config.json", "generation_config.json"]


def find_vocab(step_dir: pathlib.Path) -> pathlib.Path | None:
    """spiece.model saved beside the checkpoint's config.json (written by model_files.save_model_config)."""
    candidate = model_files.find_model_config(step_dir).parent / VOCAB_FILE
    return candidate if candidate.is_file() else None


def _check_vocab(vocab: pathlib.Path) -> None:
    """Before anything is written: the file exists and is a unigram model. transformers' T5
    tokenizers read every SentencePiece model as unigram: a BPE model's pieces come back but not
    its merges, so texts tokenize differently (on the built-in task 143 of 429 texts did) and the
    exported model would see ids it was not trained on."""
    if not vocab.is_file():
        raise FileNotFoundError(f"vocabulary {vocab} does not exist")

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(vocab.read_bytes())
    kind = sentencepiece_model_pb2.TrainerSpec.ModelType.Name(proto.trainer_spec.model_type)
    if kind != "UNIGRAM":
        raise ValueError(f"vocabulary {vocab}: trainer_spec.model_type {kind}; T5Tokenizer(Fast) "
                         "tokenizes only UNIGRAM SentencePiece models as SentencePiece does: "
                         "retrain the vocabulary as unigram, or export with --no-tokenizer")


def _write_vocab(out_dir: pathlib.Path, step_dir: pathlib.Path, vocab: pathlib.Path | None) -> list[str]:
    """`vocab`: resolved and checked by export_hf (None: none given or saved)."""
    if vocab is None:
        log.warning("no SentencePiece vocabulary given or saved beside %s: no tokenizer exported", step_dir)
        return []
    shutil.copyfile(vocab, out_dir / VOCAB_FILE)
    # extra_ids=0: ids are exactly the SentencePiece ids our tasks used (no sentinels appended).
    tokenizer_config = {"tokenizer_class": "T5Tokenizer", "extra_ids": 0, "eos_token": "</s>",
                        "unk_token": "<unk>", "pad_token": "<pad>", "model_max_length": 512}
    (out_dir / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")
    return [VOCAB_FILE, "tokenizer_config.json"]

"""T5X checkpoint → our Orbax checkpoint (and the shared "write ours" step of every import).

Supported T5X layouts (one step directory `checkpoint_<step>/`, or a MODEL_DIR holding them):

1. Legacy msgpack + TensorStore (the public T5X / Flan-T5 checkpoints, also what T5X's Orbax
   `TrainStateCheckpointHandler` writes): a msgpack file `checkpoint` (flax.serialization) holding
   `{"version": 3, "optimizer": {"target": PARAMS, "state": ...}}` (version 0: the optimizer dict
   at the top). Each PARAMS leaf is an inline array, or a TensorStore spec dict
   `{"driver": "zarr", "kvstore": {"driver": "file"|"gcs", "path": "target.encoder...."}, ...}`
   whose path is relative to the step directory.
2. Orbax-native PyTree (`_METADATA` in the step dir, e.g. T5X with OCDBT): the same tree
   (`optimizer/target/...` or `target/...`), read with Orbax.

PARAMS use T5X names and unrolled layers (`encoder/layers_0/attention/query/kernel` [embed,
heads*kv], `out/kernel` [heads*kv, embed], `mlp/wi_0|wi_1|wi|wo/kernel`, `relpos_bias/rel_embedding`
[heads, buckets], `decoder/logits_dense/kernel`, `token_embedder/embedding`, `*_norm/scale`).
Scanned T5X checkpoints (`encoder/layers/...`) and TF (Mesh TensorFlow) checkpoints are not
supported and fail with a message. The model config is inferred from tensor shapes;
`relative_attention_max_distance`, `layer_norm_epsilon` etc. keep T5 defaults unless overridden.
"""
from __future__ import annotations

import pathlib
import re
from typing import Any, Callable

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import serialization

from t5x_sbs import checkpoints
from t5x_sbs.checkpoints import model_files
from t5x_sbs.convert.hf_names import tensor_rules
from t5x_sbs.models.config import T5Config
from t5x_sbs.models.info import param_shapes

SUPPORTED = ("a T5X step dir `checkpoint_<step>/` with a msgpack `checkpoint` file (legacy "
             "msgpack+TensorStore) or an Orbax `_METADATA` file, or a MODEL_DIR holding such dirs")


def save_as_ours(out_dir, config, params: dict, *, vocab=None, step: int = 0) -> pathlib.Path:
    """Writes params (unrolled or scanned, as `config.scan_layers` says) as our MODEL_DIR step."""
    out_dir = pathlib.Path(out_dir)
    with checkpoints.CheckpointManager(out_dir, save_interval_steps=1, async_save=False) as manager:
        manager.save(step, {"params": params}, force=True)
    model_files.save_model_config(out_dir, config, vocabulary=vocab)
    return out_dir / str(step)


def find_t5x_step_dir(path, step: int | None = None) -> pathlib.Path:
    path = pathlib.Path(path)
    if (path / "checkpoint").is_file() or (path / "_METADATA").is_file():
        return path
    steps = sorted(int(m.group(1)) for p in path.glob("checkpoint_*")
                   if (m := re.fullmatch(r"checkpoint_(\d+)", p.name)))
    if not steps:
        raise FileNotFoundError(f"{path}: not a T5X checkpoint; supported: {SUPPORTED}")
    chosen = steps[-1] if step is None else step
    if chosen not in steps:
        raise FileNotFoundError(f"{path}: no checkpoint_{chosen} (have {steps})")
    return find_t5x_step_dir(path / f"checkpoint_{chosen}")


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict) and not _is_ts_spec(tree):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}/{key}" if prefix else str(key)))
        return out
    return {prefix: tree}


def _is_ts_spec(value: Any) -> bool:
    return isinstance(value, dict) and "kvstore" in value and "driver" in value


def _target_of(tree: dict, source: pathlib.Path) -> dict:
    optimizer = tree.get("optimizer", tree) if tree.get("version", 0) else tree
    for candidate in (optimizer, tree.get("state", {}) if isinstance(tree.get("state"), dict) else {}):
        if isinstance(candidate, dict) and isinstance(candidate.get("target"), dict):
            return candidate["target"]
    raise ValueError(f"{source}: no 'optimizer/target' (or 'target') parameter tree; top-level keys {sorted(tree)}")


def _read_tensorstore(spec: dict, step_dir: pathlib.Path) -> np.ndarray:
    import tensorstore as ts

    spec = dict(spec, kvstore=dict(spec["kvstore"]))
    relative = spec["kvstore"].get("path", spec.get("path"))
    spec.pop("path", None)
    spec["kvstore"] = {"driver": "file", "path": str(step_dir / relative)}
    return np.asarray(ts.open(spec, open=True).result().read().result())


def read_t5x_params(step_dir: pathlib.Path) -> dict[str, Callable[[], np.ndarray]]:
    """T5X name → a reader of that tensor (read lazily, one at a time)."""
    if (step_dir / "checkpoint").is_file():
        try:
            tree = serialization.msgpack_restore((step_dir / "checkpoint").read_bytes())
        except Exception as e:  # msgpack raises several types for corrupt input
            raise ValueError(f"{step_dir / 'checkpoint'}: not a T5X msgpack checkpoint: {e}") from e
        if not isinstance(tree, dict):
            raise ValueError(f"{step_dir / 'checkpoint'}: not a T5X msgpack checkpoint (no dict at the top)")
        flat = _flatten(_target_of(tree, step_dir / "checkpoint"))
        readers = {}
        for name, leaf in flat.items():
            if _is_ts_spec(leaf):
                readers[name] = lambda leaf=leaf: _read_tensorstore(leaf, step_dir)
            elif isinstance(leaf, (np.ndarray, np.generic)):
                readers[name] = lambda leaf=leaf: np.asarray(leaf)
            else:
                raise ValueError(f"{step_dir / 'checkpoint'}: tensor {name!r} is a {type(leaf).__name__}, "
                                 "neither an array nor a TensorStore spec")
        return readers
    return _read_orbax_params(step_dir)


def _read_orbax_params(step_dir: pathlib.Path) -> dict[str, Callable[[], np.ndarray]]:
    with ocp.Checkpointer(ocp.PyTreeCheckpointHandler()) as ckptr:
        meta = ckptr.metadata(step_dir.absolute()).item_metadata.tree
    prefix = ("optimizer", "target") if "target" in meta.get("optimizer", {}) else ("target",)
    target = meta
    for key in prefix:
        if key not in target:
            raise ValueError(f"{step_dir}: no 'optimizer/target' (or 'target') tree; top-level keys {sorted(meta)}")
        target = target[key]

    def read(name: str) -> np.ndarray:
        path = prefix + tuple(name.split("/"))
        args: Any = ocp.RestoreArgs(restore_type=np.ndarray)
        for key in reversed(path):
            args = {key: args}
        item = _nested(path, 0)
        with ocp.Checkpointer(ocp.PyTreeCheckpointHandler()) as ckptr:
            tree = ckptr.restore(step_dir.absolute(), args=ocp.args.PyTreeRestore(
                item, restore_args=args, partial_restore=True))
        for key in path:
            tree = tree[key]
        return np.asarray(tree)

    return {name: (lambda name=name: read(name)) for name in _flatten(target)}


def _nested(path: tuple[str, ...], leaf: Any) -> Any:
    for key in reversed(path):
        leaf = {key: leaf}
    return leaf


def infer_config(shapes: dict[str, tuple[int, ...]], source: pathlib.Path, **overrides):
    """T5Config from T5X tensor shapes (the checkpoint carries no config)."""
    def shape(name: str) -> tuple[int, ...]:
        if name not in shapes:
            raise ValueError(f"{source}: tensor {name!r} missing (needed to infer the model config)")
        return shapes[name]

    if any(name.startswith(("encoder/layers/", "decoder/layers/")) for name in shapes):
        raise ValueError(f"{source}: scanned T5X layers (encoder/layers/...) are not supported; {SUPPORTED}")
    vocab_size, d_model = shape("token_embedder/embedding")
    num_heads = shape("encoder/relpos_bias/rel_embedding")[0]
    layers = lambda stack: len({m.group(1) for n in shapes if (m := re.match(rf"{stack}/layers_(\d+)/", n))})  # noqa: E731
    gated = "encoder/layers_0/mlp/wi_0/kernel" in shapes
    fields = dict(
        vocab_size=vocab_size, d_model=d_model, num_heads=num_heads,
        d_kv=shape("encoder/layers_0/attention/query/kernel")[-1] // num_heads,
        d_ff=shape(f"encoder/layers_0/mlp/{'wi_0' if gated else 'wi'}/kernel")[-1],
        num_encoder_layers=layers("encoder"), num_decoder_layers=layers("decoder"),
        relative_attention_num_buckets=shape("encoder/relpos_bias/rel_embedding")[1],
        feed_forward_proj="gated-gelu" if gated else "relu",
        tie_word_embeddings="decoder/logits_dense/kernel" not in shapes,
    )
    fields.update(overrides)
    unknown = sorted(set(fields) - {f for f in T5Config.__dataclass_fields__})
    if unknown:
        raise ValueError(f"config override field(s) {unknown} are not T5Config fields")
    return T5Config(**fields)


def import_t5x(path, out_dir, *, step: int | None = None, vocab=None, **config_overrides) -> pathlib.Path:
    """Converts a T5X checkpoint (see module docstring) into our MODEL_DIR `out_dir`."""
    step_dir = find_t5x_step_dir(path, step)
    readers = read_t5x_params(step_dir)
    arrays = {name: read() for name, read in readers.items()}  # T5X small..xl fit; shapes drive the config
    config = infer_config({n: a.shape for n, a in arrays.items()}, step_dir, **config_overrides)
    expected = {tuple(k.key for k in p): tuple(x.shape) for p, x in
                jax.tree_util.tree_flatten_with_path(param_shapes(config.replace(scan_layers=False)))[0]}
    wanted = {"/".join(rule.path): rule.path for rule in tensor_rules(config)}
    unexpected = sorted(set(arrays) - set(wanted))
    if unexpected:
        raise ValueError(f"{step_dir}: tensors with no place in the inferred T5 config: {unexpected[:8]}")
    params: dict = {}
    for name, path in wanted.items():
        if name not in arrays:
            raise ValueError(f"{step_dir}: tensor {name!r} missing from the T5X checkpoint")
        array, target_shape = arrays.pop(name), expected[path]
        if array.shape not in (target_shape, _t5x_form(path, target_shape)):
            raise ValueError(f"{step_dir}: tensor {name!r} has shape {array.shape}, "
                             f"expected {_t5x_form(path, target_shape)}")
        node = params
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = np.asarray(array.reshape(target_shape), config.weight_dtype)
    return save_as_ours(out_dir, config, params, vocab=vocab, step=_step_of(step_dir))


def _t5x_form(path: tuple[str, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    """T5X stores attention kernels 2-D: query/key/value [embed, heads*kv], out [heads*kv, embed]."""
    if len(shape) != 3:
        return shape
    return (shape[0] * shape[1], shape[2]) if path[-2] == "out" else (shape[0], shape[1] * shape[2])


def _step_of(step_dir: pathlib.Path) -> int:
    match = re.fullmatch(r"checkpoint_(\d+)", step_dir.name)
    return int(match.group(1)) if match else 0

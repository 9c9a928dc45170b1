"""`t5x-sbs convert`: ours → Hugging Face, Hugging Face → ours, T5X → ours.

    t5x-sbs convert --from MODEL_DIR[/best|/STEP] --to hf --out DIR [--dtype bfloat16] [--vocab SPM_PATH]
    t5x-sbs convert --from hf:DIR --to ours --out CKPT
    t5x-sbs convert --from t5x:DIR --to ours --out CKPT [--config config.json]

An `ours` output is a MODEL_DIR holding one step (0) plus config.json: usable as
INITIAL_CHECKPOINT_PATH and as the source of a later `--to hf`.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

from t5x_sbs.convert.hf_export import export_hf
from t5x_sbs.convert.hf_import import load_hf_t5
from t5x_sbs.convert.t5x_import import import_t5x, save_as_ours


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="source", required=True,
                        help="our MODEL_DIR / step dir / best dir, hf:DIR, or t5x:DIR")
    parser.add_argument("--to", dest="target", required=True, choices=("hf", "ours"))
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                        help="tensor dtype of an HF export")
    parser.add_argument("--max-shard-size", default="5GB",
                        help="largest safetensors file of an HF export, e.g. 500MB, 5GB")
    parser.add_argument("--vocab", default=None, help="SentencePiece model to ship with an HF export "
                        "(default: MODEL_DIR/spiece.model when present)")
    parser.add_argument("--no-tokenizer", action="store_true",
                        help="export without a SentencePiece vocabulary (else one is required)")
    parser.add_argument("--config", default=None,
                        help="t5x: our config.json (T5Config fields) overriding what is inferred from shapes")
    parser.add_argument("--step", type=int, default=None, help="t5x: checkpoint_STEP (default: latest)")


def parse_size(text: str) -> int:
    units = {"KB": 1024, "MB": 1024**2, "GB": 1024**3, "B": 1}
    text = text.strip().upper()
    for unit, factor in units.items():
        if text.endswith(unit) and text[: -len(unit)].strip().replace(".", "", 1).isdigit():
            return int(float(text[: -len(unit)]) * factor)
    if text.isdigit():
        return int(text)
    raise ValueError(f"--max-shard-size {text!r}: expected e.g. 500MB or 5GB")


def convert(source: str, target: str, out: str, *, dtype: str = "float32", max_shard_size: str = "5GB",
            vocab: str | None = None, config: str | None = None, step: int | None = None,
            no_tokenizer: bool = False) -> str:
    """Runs one conversion; returns a one-line summary."""
    kind, _, path = source.partition(":") if source.split(":", 1)[0] in ("hf", "t5x") else ("ours", "", source)
    if kind == "ours":
        if target != "ours" and target != "hf":
            raise ValueError(f"--to {target!r}")
        if target == "ours":
            raise ValueError("--from an Orbax checkpoint --to ours: nothing to convert")
        summary = export_hf(path, out, dtype=dtype, max_shard_bytes=parse_size(max_shard_size), vocab=vocab,
                            require_vocab=not no_tokenizer, with_tokenizer=not no_tokenizer)
        return (f"exported {summary.step_dir} → {summary.out_dir}: {summary.num_tensors} tensors, "
                f"{summary.total_bytes / 1e6:.1f} MB in {', '.join(summary.files)}")
    if target != "ours":
        raise ValueError(f"--from {kind}:... converts --to ours only (then --to hf from that)")
    if kind == "hf":
        model_config, params = load_hf_t5(path)
        step_dir = save_as_ours(out, model_config, params, vocab=vocab or _hf_vocab(path))
        return f"imported {path} → {step_dir} ({model_config.num_encoder_layers} layers, d_model {model_config.d_model})"
    overrides = json.loads(pathlib.Path(config).read_text()) if config else {}
    step_dir = import_t5x(path, out, step=step, vocab=vocab, **overrides)
    return f"imported {path} → {step_dir}"


def _hf_vocab(path: str) -> str | None:
    candidate = pathlib.Path(path) / "spiece.model"
    return str(candidate) if candidate.is_file() else None


def run(args: argparse.Namespace) -> int:
    try:
        print(convert(args.source, args.target, args.out, dtype=args.dtype, max_shard_size=args.max_shard_size,
                      vocab=args.vocab, config=args.config, step=args.step, no_tokenizer=args.no_tokenizer))
    except (ValueError, FileNotFoundError, KeyError) as e:
        print(f"t5x-sbs convert: error: {e}", file=sys.stderr)
        return 2
    return 0

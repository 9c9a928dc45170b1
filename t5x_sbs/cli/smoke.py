"""`t5x-sbs smoke`: init a tiny T5, run a forward pass and a greedy decode, print what happened."""
from __future__ import annotations

import argparse

import gin
import jax

from t5x_sbs.models.config import T5Config
from t5x_sbs.models.info import param_count
from t5x_sbs.models.smoke import TINY, smoke


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gin_file", action="append", default=[], help="gin file(s) binding T5Config (default: built-in tiny)")
    parser.add_argument("--gin_param", action="append", default=[], help="extra binding, e.g. T5Config.scan_layers=True")
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--length", type=int, default=12, help="encoder/decoder length of the random batch")
    parser.add_argument("--max_decode_length", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    gin.parse_config_files_and_bindings(args.gin_file, args.gin_param)
    config = T5Config.from_gin() if args.gin_file or args.gin_param else T5Config(**TINY)
    print(f"model: d_model={config.d_model} layers={config.num_encoder_layers}/{config.num_decoder_layers} "
          f"vocab={config.vocab_size} ffn={config.feed_forward_proj} scan={config.scan_layers} "
          f"params={param_count(config):,} on {jax.devices()[0].platform}")
    result = smoke(config, args.batch_size, args.length, args.max_decode_length, args.seed)
    print(f"forward: logits {result.logits_shape} {result.logits_dtype}, finite={result.logits_finite}, "
          f"{result.forward_s:.2f}s incl. compile")
    print(f"greedy decode ({args.max_decode_length} steps max, KV cache): {result.decode_s:.2f}s incl. compile")
    for row, (tokens, score) in enumerate(zip(result.tokens, result.scores)):
        print(f"  row {row}: tokens {tokens} score {score:.3f}")
    return 0

"""`t5x-sbs model-info`: parameter count and shapes of a gin-configured T5, without allocating it."""
from __future__ import annotations

import argparse
import json

import gin

from t5x_sbs.models.config import T5Config
from t5x_sbs.models.info import describe


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gin_file", action="append", default=[], help="gin file(s) binding T5Config")
    parser.add_argument("--gin_param", action="append", default=[], help="extra binding, e.g. T5Config.d_model=64")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    gin.parse_config_files_and_bindings(args.gin_file, args.gin_param)
    info = describe(T5Config.from_gin())
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"params: {info['params']:,} ({info['bytes'] / 2**30:.2f} GiB in {info['config']['param_dtype']})")
    for name, count in info["params_by_module"].items():
        print(f"  {name}: {count:,}")
    print("config: " + ", ".join(f"{k}={v}" for k, v in info["config"].items()))
    return 0

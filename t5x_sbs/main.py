"""Entry point, T5X style: `python -m t5x_sbs.main --run_mode=train --gin_file=... --gin.KEY=VALUE`.

Also `t5x-sbs train ...` (same flags). Gin files are read in order, then `--gin.KEY=VALUE`
bindings (T5X spelling; `--gin_param='KEY = VALUE'` works too). `precompile` lowers and compiles
the train step from shapes only (t5x_sbs.trainer.precompile, the launch module).

As T5X binds `train()`, gin configures only what this entry point reads: after parsing, the run's
typed configs (t5x_sbs.trainer.configs: RunConfig, T5Config, OptimizerConfig, MeshConfig,
LossConfig, EvalConfig) are built once here and passed down explicitly.
"""
from __future__ import annotations

import argparse
import logging
import sys

from t5x_sbs.trainer import configs, distributed, evaluation, precompile, train_loop
from t5x_sbs.user_errors import pop_debug, report_errors

RUN_MODES = ("train", "eval", "infer", "precompile")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run_mode", choices=RUN_MODES, default="train")
    parser.add_argument("--gin_file", action="append", default=[], help="gin config file (repeatable)")
    parser.add_argument("--gin_param", action="append", default=[], help="gin binding 'KEY = VALUE' (repeatable)")
    parser.add_argument("--gin_search_path", action="append", default=["."], help="where gin includes are looked up")
    distributed.add_arguments(parser)
    # `t5x-sbs train` builds the parser through cli.py: let it accept --gin.KEY=VALUE too.
    plain_parse = parser.parse_args

    def parse_args(argv=None, namespace=None):
        argv, bindings = split_gin_flags(list(sys.argv[1:] if argv is None else argv))
        args = plain_parse(argv, namespace)
        args.gin_bindings = bindings
        return args

    parser.parse_args = parse_args


def split_gin_flags(argv: list[str]) -> tuple[list[str], list[str]]:
    """Pulls T5X-style `--gin.KEY=VALUE` flags out of argv as gin bindings."""
    rest, bindings = [], []
    for arg in argv:
        if arg.startswith("--gin."):
            key, sep, value = arg[len("--gin."):].partition("=")
            if not sep:
                raise SystemExit(f"{arg}: expected --gin.KEY=VALUE")
            bindings.append(f"{key} = {value}")
        else:
            rest.append(arg)
    return rest, bindings


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        group = distributed.maybe_initialize_from_args(args)
    except distributed.JoinError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if group is not None and group.process_id is not None:  # interleaved logs say whose line it is
        logging.basicConfig(level=logging.INFO, force=True, format=(
            f"%(asctime)s %(levelname)s [process {group.process_id}/{group.num_processes}] %(name)s: %(message)s"))
    compiling = args.run_mode == "precompile"
    configs.parse_gin(args.gin_file, list(getattr(args, "gin_bindings", [])) + args.gin_param, args.gin_search_path,
                      defaults=precompile.UNSET_RUN_MACRO_DEFAULTS if compiling else ())
    # The one read of the typed configs; passed down from here. A compile needs neither output field,
    # and a model + partitioning gin pair binds neither.
    run_configs = configs.from_gin(**(precompile.UNSET_RUN_FIELDS if compiling else {}))
    if compiling:
        return int(precompile.run(run_configs, precompile.PrecompileConfig.from_gin()) or 0)
    if args.run_mode == "train":
        result = train_loop.train(run_configs)
        logging.info("finished: %s", result)
        return 0
    return evaluation.run_mode(args.run_mode, run_configs, configs.EvalConfig())


def main(argv: list[str] | None = None) -> int:
    """Expected user errors (bad gin, paths, data, numbers) end as one line, exit code 2;
    `--debug` shows the traceback."""
    argv, debug = pop_debug(list(sys.argv[1:] if argv is None else argv))
    parser = argparse.ArgumentParser(prog="python -m t5x_sbs.main", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return report_errors("python -m t5x_sbs.main", lambda: run(parser.parse_args(argv)), debug=debug)


if __name__ == "__main__":
    sys.exit(main())

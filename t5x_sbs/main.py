"""Entry point, T5X style: `python -m t5x_sbs.main --run_mode=train --gin_file=... --gin.KEY=VALUE`.

Also `t5x-sbs train ...` (same flags). Gin files are read in order, then `--gin.KEY=VALUE`
bindings (T5X spelling; `--gin_param='KEY = VALUE'` works too). `precompile` lowers and compiles
the train step from shapes only (t5x_sbs.trainer.precompile, the launch module).
"""
from __future__ import annotations

import argparse
import difflib
import logging
import os
import sys

from t5x_sbs import gin_paths
from t5x_sbs.records import InputError

RUN_MODES = ("train", "eval", "infer", "precompile")
# Defaults bound before the user's files, so gin/hardware/*.gin or a flag may override them.
DEFAULT_BINDINGS = ["PEAK_FLOPS_PER_DEVICE = None", "INITIAL_CHECKPOINT_PATH = None", "SPM_PATH = None"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from t5x_sbs.trainer import distributed

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


def parse_gin(files: list[str], bindings: list[str], search_paths: list[str] = (".",)) -> None:
    import gin

    import t5x_sbs.trainer.train_loop  # noqa: F401  registers the configurables the run files bind
    import t5x_sbs.trainer.evaluation  # noqa: F401
    from t5x_sbs.tasks import catalog
    catalog.register_all()

    for path in [*search_paths, str(gin_paths.shipped_root())]:
        gin.add_config_file_search_path(path)
    gin.parse_config(DEFAULT_BINDINGS)
    for path in files:
        found = gin_paths.find(path, search_paths)
        if found is None:
            raise InputError(path, None, None, "gin file not found (looked here, in --gin_search_path and the shipped gin files)")
        if os.path.isdir(found):
            raise InputError(found, None, None, "is a directory, not a gin file")
    gin.parse_config_files_and_bindings(list(files), list(bindings), finalize_config=False)
    check_macros_used(bindings)


# Macros code reads with gin.query_parameter (no gin file references them).
CODE_MACROS = {"NUM_DEVICES", "DEVICE_MEMORY_GB", "MODEL_DIR", "MIXTURE_OR_TASK_NAME"}


def check_macros_used(bindings: list[str]) -> None:
    """A `--gin.NAME=VALUE` macro that nothing references is a typo (`TRAIN_STEPZ`): an error."""
    import gin

    config = gin.config._CONFIG  # gin has no public walk over the parsed bindings
    used: set[str] = set(CODE_MACROS)

    def walk(value):
        if isinstance(value, gin.config.ConfigurableReference) and value.selector == "gin.macro":
            used.add(value.scoped_selector.rsplit("/", 1)[0])
        elif isinstance(value, (list, tuple, set)):
            for v in value:
                walk(v)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)

    for params in config.values():
        walk(list(params.values()))
    for binding in bindings:
        name = binding.split("=", 1)[0].strip()
        if name and "." not in name and "/" not in name and name not in used:
            close = difflib.get_close_matches(name, sorted(used), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise InputError(f"--gin.{name}", None, None,
                             f"macro {name} is used by no loaded gin file or configurable{hint}")


def run(args: argparse.Namespace) -> int:
    from t5x_sbs.trainer import distributed

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        group = distributed.maybe_initialize_from_args(args)
    except distributed.JoinError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if group is not None and group.process_id is not None:  # interleaved logs say whose line it is
        logging.basicConfig(level=logging.INFO, force=True, format=(
            f"%(asctime)s %(levelname)s [process {group.process_id}/{group.num_processes}] %(name)s: %(message)s"))
    parse_gin(args.gin_file, list(getattr(args, "gin_bindings", [])) + args.gin_param, args.gin_search_path)
    if args.run_mode == "precompile":
        from t5x_sbs.trainer import precompile

        return int(precompile.run() or 0)
    from t5x_sbs.trainer import evaluation, train_loop

    if args.run_mode == "train":
        result = train_loop.train(train_loop.RunConfig())
        logging.info("finished: %s", result)
        return 0
    return evaluation.run_mode(args.run_mode)


def main(argv: list[str] | None = None) -> int:
    """Expected user errors (bad gin, paths, data, numbers) end as one line, exit code 2;
    `--debug` shows the traceback."""
    from t5x_sbs.user_errors import pop_debug, report_errors

    argv, debug = pop_debug(list(sys.argv[1:] if argv is None else argv))
    parser = argparse.ArgumentParser(prog="python -m t5x_sbs.main", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return report_errors("python -m t5x_sbs.main", lambda: run(parser.parse_args(argv)), debug=debug)


if __name__ == "__main__":
    sys.exit(main())

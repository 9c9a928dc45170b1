"""`t5x-sbs` command line: a thin dispatcher over the library.

Each subcommand is a module of this package exposing `add_arguments(parser)` and
`run(args) -> int` over the library (`train` is `t5x_sbs.main`, the gin entry point); the
library never imports this package. Expected user errors (bad paths, data, gin,
checkpoints) end as one line with exit code 2 (`t5x_sbs.user_errors`); `--debug` anywhere on
the command line shows the traceback instead. Modules are imported only when their
subcommand runs, so `t5x-sbs --help` stays fast and needs no JAX or TensorFlow.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from t5x_sbs.user_errors import OneLineArgumentParser, pop_debug, report_errors

# name -> (module, one-line help). The module owns the arguments; the library the behaviour.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "smoke": ("t5x_sbs.cli.smoke", "init a tiny T5, run a forward pass and a greedy decode"),
    "model-info": ("t5x_sbs.cli.model_info", "parameter count and shapes of a gin model, without allocating it"),
    "data-report": ("t5x_sbs.cli.data_report", "examples, teacher agreement and parse failures of a dataset split"),
    "vocab": ("t5x_sbs.cli.vocab", "train a small SentencePiece vocabulary from a task's texts"),
    "cache-tasks": ("t5x_sbs.cli.cache_tasks", "run the tasks' SeqIO preprocessing on Apache Beam into a cache (use_cached)"),
    "pack-lengths": ("t5x_sbs.cli.pack_lengths", "token-length percentiles of a task and the packed row lengths they suggest"),
    "import-rationales": ("t5x_sbs.cli.import_rationales", "turn third-party CoT files (eitnlp_cot) into a teacher store"),
    "rationales": ("t5x_sbs.cli.rationales", "ask a teacher LLM for rationales and labels into a JSONL store"),
    "optimize-prompt": ("t5x_sbs.cli.optimize_prompt", "search a zero-shot instruction with the teacher (OPRO)"),
    "ledger": ("t5x_sbs.cli.ledger", "token, cost and status totals of a rationale store"),
    "train": ("t5x_sbs.main", "run the trainer (same flags as python -m t5x_sbs.main)"),
    "convert": ("t5x_sbs.cli.convert", "convert checkpoints between ours, Hugging Face and T5X"),
    "demo": ("t5x_sbs.cli.demo", "the offline end-to-end pipeline on the built-in task"),
    "sweep": ("t5x_sbs.cli.sweep", "run a grid of methods x data fractions x sizes x lambda x seeds"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="t5x-sbs",
        description="Distilling step-by-step: teacher rationales, SeqIO tasks, a T5X-style trainer.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in SUBCOMMANDS.items():
        # add_help=False: the owning module adds its own arguments (and -h) when it runs.
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs a subcommand; expected user errors print one line and return 2 (`--debug`: traceback)."""
    argv, debug = pop_debug(list(sys.argv[1:] if argv is None else argv))
    name = argv[0] if argv else "t5x-sbs"
    return report_errors(f"t5x-sbs {name}", lambda: _dispatch(argv), debug=debug)


def _dispatch(argv: list[str]) -> int:
    parser = build_parser()
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in SUBCOMMANDS:
        parser.parse_args(argv)  # prints help or the "invalid choice" error
        parser.print_help()
        return 0 if not argv else 2
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(SUBCOMMANDS[name][0])
    sub_parser = OneLineArgumentParser(prog=f"t5x-sbs {name}", description=SUBCOMMANDS[name][1])
    module.add_arguments(sub_parser)
    return int(module.run(sub_parser.parse_args(rest)) or 0)


if __name__ == "__main__":
    sys.exit(main())

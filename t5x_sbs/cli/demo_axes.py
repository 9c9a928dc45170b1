"""`python -m t5x_sbs.experiments.demo_axes`: more students from a finished demo (`experiments.demo_axes`).

Bad cells (`--fractions`, `--methods`, `--rationale_weights`, `--seeds`) are refused when parsed, before any training.
"""
from __future__ import annotations

import argparse

from t5x_sbs.cli.demo import BUCKETS_HELP, DROPOUT_HELP, JOBS_HELP, dropout_rate
from t5x_sbs.experiments import axes_report, demo_axes, tables
from t5x_sbs.names import LOSS_MODES
from t5x_sbs.user_errors import int_list, non_negative_int, positive_float, positive_int


def _floats(text: str) -> list[float]:
    """Comma-separated numbers, or [] when one is not a number (the caller names the flag's rule)."""
    try:
        return [float(item) for item in text.split(",") if item.strip()]
    except ValueError:
        return []


def fractions(text: str) -> list[float]:
    values = _floats(text)
    if not values or not all(0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"must be comma-separated fractions in (0, 1], e.g. 0.5,0.25; got {text!r}")
    return values


def weights(text: str) -> list[float]:
    values = _floats(text)
    if not values or min(values) < 0 or len(set(values)) < len(values):
        raise argparse.ArgumentTypeError(f"must be distinct comma-separated λ ≥ 0, e.g. 0.5,1,2; got {text!r}")
    return values


def methods(text: str) -> list[str]:
    out = [m.strip() for m in text.split(",") if m.strip()]
    for item in out:
        method, _, mode = item.partition("@")
        if method not in tables.METHODS or (mode and mode not in LOSS_MODES):
            raise argparse.ArgumentTypeError(f"{item!r}: METHOD from {list(tables.METHODS)}, "
                                             f"optionally @LOSS_MODE from {list(LOSS_MODES)}")
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add, default = parser.add_argument, demo_axes.AxesConfig()  # the defaults live in AxesConfig
    add("--out_dir", default=default.out_dir, help="a finished demo (its data/ and teacher/)")
    add("--pretrained", default="", help="its pretrained student dir (default: the only one under runs/pretrained)")
    add("--methods", type=methods, default=",".join(default.methods), help="comma-separated METHOD or METHOD@LOSS_MODE")
    add("--fractions", type=fractions, default=",".join(f"{f:g}" for f in default.fractions),
        help="comma-separated fractions of the train examples (nested)")
    add("--seeds", type=int_list, default=",".join(map(str, default.seeds)))
    add("--rationale_weights", type=weights, default=",".join(f"{w:g}" for w in default.rationale_weights),
        help="comma-separated λ for the step-by-step methods (standard methods train once)")
    add("--train_steps", type=positive_int, default=default.train_steps, help="at most this many steps per student")
    add("--early_stopping_patience", type=positive_int, default=default.early_stopping_patience)
    add("--rows", default=default.rows)
    add("--jobs", type=non_negative_int, default=default.jobs, help=JOBS_HELP)
    add("--model_gin", default=default.model_gin, help="the demo's student model (its --model_gin)")
    add("--length_bucket_window", type=non_negative_int, default=default.length_bucket_window, help=BUCKETS_HELP)
    add("--sbs_loss_mode", choices=LOSS_MODES, default=default.sbs_loss_mode,
        help="loss mode of a step-by-step METHOD without @LOSS_MODE (the demo's --sbs_loss_mode)")
    add("--learning_rate", type=positive_float, default=default.learning_rate,
        help="peak learning rate of every student (another one needs its own --rows)")
    add("--dropout_rate", type=dropout_rate, default=default.dropout_rate, help=DROPOUT_HELP)
    add("--report", action="store_true",
        help="train nothing: print the demo's and the rows' table with paired differences")


def run(args: argparse.Namespace) -> int:
    if args.report:
        try:
            print(axes_report.report(args.out_dir, args.rows, args.model_gin))
        except FileNotFoundError as e:  # not a finished demo
            raise SystemExit(f"demo_axes --report: {e}") from None
        return 0
    axes = demo_axes.AxesConfig(
        out_dir=args.out_dir, methods=tuple(args.methods), fractions=tuple(args.fractions),
        seeds=tuple(int(s) for s in args.seeds.split(",")), rationale_weights=tuple(args.rationale_weights),
        train_steps=args.train_steps, early_stopping_patience=args.early_stopping_patience, rows=args.rows,
        jobs=args.jobs, model_gin=args.model_gin, length_bucket_window=args.length_bucket_window,
        sbs_loss_mode=args.sbs_loss_mode, learning_rate=args.learning_rate, dropout_rate=args.dropout_rate)
    try:
        student = demo_axes.find_student(args.pretrained, args.model_gin)
    except ValueError as e:
        raise SystemExit(f"demo_axes: {e}") from None
    try:
        demo_axes.run_axes(axes, student)
    except ValueError as e:  # a rows file of another budget
        raise SystemExit(f"demo_axes: {e}") from None
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=demo_axes.__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())

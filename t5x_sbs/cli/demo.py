"""`t5x-sbs demo`: the offline end-to-end pipeline on the built-in task (`t5x_sbs.experiments.demo`).

The flags become one `DemoConfig`; `--teacher_args` are `t5x-sbs rationales` flags, parsed here
into the teacher's `AskSettings` (so a bad one fails before any work).
"""
from __future__ import annotations

import argparse
import shlex

from t5x_sbs.cli import rationales as rationales_cli
from t5x_sbs.data import arith
from t5x_sbs.experiments import demo, tables
from t5x_sbs.experiments.preparation import PreparationError
from t5x_sbs.names import LOSS_MODES
from t5x_sbs.teacher import annotation
from t5x_sbs.user_errors import (OneLineArgumentParser, int_list, non_negative_float, non_negative_int,
                                 positive_float, positive_int)


JOBS_HELP = ("students trained at a time, each in its own process pinned to its share of the CPU cores "
             "(0: one per core on a CPU, 1 on an accelerator; 1 keeps them in this process)")
BUCKETS_HELP = ("W > 0: students train on length-bucketed batches (one example a row, W batches sorted by length "
                "together, RunConfig.length_bucket_window); 0: packed rows")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add, default = parser.add_argument, demo.DemoConfig()  # the defaults live in DemoConfig
    add("--out_dir", default=default.out_dir, help="everything the demo writes")
    add("--dataset", default=default.dataset, help="arith (built in, generated) or a paper dataset, e.g. svamp")
    add("--data_dir", default=default.data_dir, help="paper-layout data (../shared/data) for --dataset other than arith")
    add("--teacher", default=default.teacher, help="scripted:arith[,error_rate=R] | gemini:MODEL | replay:palm")
    add("--teacher_args", default="", help="extra flags for `t5x-sbs rationales` (e.g. '--rpm 60')")
    add("--samples_mode", choices=("first", "vote", "all"), default=default.samples_mode,
        help="how the students read several teacher samples per example (--teacher_args '--samples 5'): "
             "first (the lowest), vote (majority label, its distinct agreeing rationales) or all")
    add("--methods", default=",".join(default.methods), help=f"comma-separated, from {list(tables.METHODS)}")
    add("--model_gin", default=default.model_gin)
    add("--initial_checkpoint", default=default.initial_checkpoint, help="pretrained checkpoint (ours or an HF dir): finetune it, with its "
        "spiece.model and embedding rows")
    add("--spm_path", default=default.spm_path, help="SentencePiece model (default: the initial or pretrained "
        "checkpoint's, else trained on the task text)")
    add("--vocab_size", type=positive_int, default=default.vocab_size)
    add("--train_steps", type=positive_int, default=default.train_steps, help="at most this many steps per student (early stopping ends most sooner)")
    add("--batch_size", type=positive_int, default=default.batch_size)
    add("--eval_every", type=positive_int, default=default.eval_every, help="validation decode (and checkpoint) interval")
    add("--learning_rate", type=positive_float, default=default.learning_rate)
    add("--dropout_rate", type=dropout_rate, default=default.dropout_rate, help=DROPOUT_HELP)
    add("--rationale_weight", type=non_negative_float, default=default.rationale_weight)
    add("--inputs_length", type=positive_int, default=default.inputs_length)
    add("--targets_length", type=positive_int, default=default.targets_length)
    add("--seed", type=int, default=default.seed)
    add("--train_size", type=positive_int, default=default.train_size)
    add("--eval_size", type=positive_int, default=default.eval_size, help="test examples (validation: 60%%)")
    add("--arith", type=arith_difficulty, default=default.arith_difficulty, help=(
        "the built-in task's difficulty, e.g. 'steps=3-5,ops=+-*,max_value=20' (default: "
        f"{default.arith_difficulty})"))
    add("--seeds", type=int_list, default=",".join(map(str, default.seeds)), help="comma-separated student seeds (each method trains once per seed)")
    add("--early_stopping_patience", type=positive_int, default=default.early_stopping_patience,
        help="stop a student after this many validation decodes (every --eval_every steps) without improvement")
    add("--pretrain_steps", type=non_negative_int, default=default.pretrain_steps, help="span-corruption steps of the student (0: from scratch)")
    add("--pretrain_batch_size", type=positive_int, default=default.pretrain_batch_size)
    add("--pretrain_corpus", choices=("shared", "task"), default=default.pretrain_corpus,
        help="shared: ../shared/data's train text + the task's train inputs; task: the task's train inputs only")
    add("--pretrain_dir", default=default.pretrain_dir, help="pretrained students, one per settings hash (reused)")
    add("--jobs", type=non_negative_int, default=default.jobs, help=JOBS_HELP)
    add("--length_bucket_window", type=non_negative_int, default=default.length_bucket_window, help=BUCKETS_HELP)
    add("--sbs_loss_mode", choices=LOSS_MODES, default=default.sbs_loss_mode, help=(
        "step-by-step students: mixture (label and rationale rows apart), paired (an example's two rows in one "
        "batch) or shared_encoder (the input encoded once, both targets decoded from it)"))
    add("--quick", action="store_true", help=(
        "a smaller version: 600 train / 200 test problems, students of at most 300 steps "
        "(validation every 50, patience 2), 200 pretraining steps on the task's own text only (no "
        "../shared/data corpus); still 3 seeds. Gives up: data, training length and the general corpus, "
        "so the CIs are wider and the pretrained student knows less"))


def arith_difficulty(text: str) -> arith.Difficulty:
    try:
        return arith.Difficulty.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def teacher_ask(args: argparse.Namespace) -> tuple[annotation.AskSettings, int]:
    """The `--teacher_args` as the rationales command reads them (after the demo's own
    `--no_progress --seed`, which they may override): how to ask, and the teacher's seed."""
    parser = OneLineArgumentParser(prog="t5x-sbs demo --teacher_args")
    rationales_cli.add_arguments(parser)
    argv = ["--dataset", args.dataset, "--data_dir", args.data_dir, "--teacher", args.teacher,
            "--out", "-", "--no_progress", "--seed", str(args.seed)]
    # shlex: quoted values (paths) stay whole
    job = rationales_cli.job_from_args(parser.parse_args(argv + shlex.split(args.teacher_args)))
    return job.ask, job.seed


DROPOUT_HELP = "the students' dropout (pretraining keeps --model_gin's); default: --model_gin's (0 for the demo students)"


def dropout_rate(text: str) -> float:
    rate = non_negative_float(text)
    if rate >= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1); got {text!r}")
    return rate


def config_from_args(args: argparse.Namespace) -> demo.DemoConfig:
    ask, teacher_seed = teacher_ask(args)
    config = demo.DemoConfig(
        out_dir=args.out_dir, dataset=args.dataset, data_dir=args.data_dir, teacher=args.teacher, teacher_ask=ask,
        teacher_seed=teacher_seed, methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
        model_gin=args.model_gin, initial_checkpoint=args.initial_checkpoint, spm_path=args.spm_path,
        vocab_size=args.vocab_size, train_steps=args.train_steps, batch_size=args.batch_size,
        eval_every=args.eval_every, learning_rate=args.learning_rate, rationale_weight=args.rationale_weight,
        inputs_length=args.inputs_length, targets_length=args.targets_length, seed=args.seed,
        train_size=args.train_size, eval_size=args.eval_size, arith_difficulty=args.arith,
        seeds=tuple(int(s) for s in args.seeds.split(",") if s.strip()),
        early_stopping_patience=args.early_stopping_patience, pretrain_steps=args.pretrain_steps,
        pretrain_batch_size=args.pretrain_batch_size, pretrain_corpus=args.pretrain_corpus,
        pretrain_dir=args.pretrain_dir, samples_mode=args.samples_mode, jobs=args.jobs,
        length_bucket_window=args.length_bucket_window, sbs_loss_mode=args.sbs_loss_mode,
        dropout_rate=args.dropout_rate)
    return config.quick() if args.quick else config


def run(args: argparse.Namespace) -> int:
    try:
        demo.run_demo(config_from_args(args))
    except PreparationError as e:  # a dataset or teacher problem: one line, exit 2
        raise SystemExit(f"demo: {e}") from None
    return 0

"""`t5x-sbs optimize-prompt`: search a dataset's zero-shot instruction with the teacher (OPRO).

    t5x-sbs optimize-prompt --dataset arith --data_dir data/arith --teacher scripted:arith \\
        --out_dir opt/arith --rounds 4 --candidates 4 --subset 60 --max_tokens 200000
    t5x-sbs rationales --dataset arith --data_dir data/arith --teacher scripted:arith \\
        --prompt opt/arith/prompt.json --out stores/arith_train.jsonl

Writes OUT_DIR/store.jsonl (every call, resumable: rerun the same command after a crash),
OUT_DIR/history.json (every scored instruction) and OUT_DIR/prompt.json (the winner, for
`--prompt`); prints a one-line JSON summary. See `t5x_sbs.teacher.optimize`.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os

from t5x_sbs.cli import rationales as teacher_cli
from t5x_sbs.teacher import annotation, backends, optimize, prompting
from t5x_sbs.teacher.runner import RunOptions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--dataset", required=True, help="a dataset with a prompt template (cqa, svamp, ..., arith)")
    add("--data_dir", required=True, help="root of the datasets; only the train split is read")
    add("--teacher", required=True, help="gemini:MODEL | scripted:NAME[,k=v...] (proposes and answers)")
    add("--out_dir", required=True, help="store.jsonl, history.json and the winner prompt.json go here")
    add("--subset", type=int, default=50, help="labelled train examples each instruction is scored on")
    add("--rounds", type=int, default=5, help="proposal rounds after scoring the dataset's own instruction")
    add("--candidates", type=int, default=4, help="instructions proposed per round")
    add("--keep", type=int, default=8, help="best instructions shown to the teacher in the meta-prompt")
    add("--exemplars", type=int, default=3, help="subset problems shown in the meta-prompt")
    add("--token_weight", type=float, default=0.0,
        help="score = accuracy - W * mean tokens / 1000 (0: accuracy, fewer tokens breaking ties)")
    add("--max_tokens", type=int, default=None, help="budget: tokens of every call in the store")
    add("--max_usd", type=float, default=None, help="budget: dollars, from the ledger's price table")
    add("--meta_temperature", type=float, default=1.0, help="gemini: sampling temperature of proposals")
    add("--concurrency", type=int, default=8)
    add("--rpm", type=float, default=0.0, help="requests per minute limit (0: none)")
    add("--no_progress", action="store_true")
    add("--seed", type=int, default=0)
    teacher_cli.add_gemini_arguments(parser)


def _positive(args: argparse.Namespace) -> None:
    for name in ("subset", "candidates", "keep"):
        if getattr(args, name) < 1:
            raise SystemExit(f"optimize-prompt: --{name} {getattr(args, name)} must be at least 1")
    if args.rounds < 0 or args.exemplars < 0:
        raise SystemExit("optimize-prompt: --rounds and --exemplars must not be negative")


def run(args: argparse.Namespace) -> int:
    _positive(args)
    kind = backends.parse_spec(args.teacher)[0]
    if kind == "replay":
        raise SystemExit("optimize-prompt: replay teachers ignore the prompt; use gemini:MODEL or scripted:NAME")
    base = prompting.load_prompt(args.dataset, "zero_shot")
    examples = optimize.train_examples(args.dataset, args.data_dir)
    context = backends.BackendContext(dataset=args.dataset, data_dir=args.data_dir, split="train", seed=args.seed)

    gemini = teacher_cli.gemini_settings(args)

    def new_backend(role: str) -> backends.TeacherBackend:
        # proposals are sampled at --meta_temperature; scoring keeps --temperature
        settings = dataclasses.replace(gemini, temperature=args.meta_temperature) if role == "meta" else gemini
        return annotation.build_backend(args.teacher, context, settings)

    config = optimize.OptimizeConfig(
        subset=args.subset, rounds=args.rounds, candidates=args.candidates, keep=args.keep,
        exemplars=args.exemplars, token_weight=args.token_weight, max_tokens=args.max_tokens,
        max_usd=args.max_usd, max_output_tokens=args.max_output_tokens,
        run=RunOptions(concurrency=args.concurrency, rpm=args.rpm, progress=not args.no_progress))
    os.makedirs(args.out_dir, exist_ok=True)
    optimizer = optimize.Optimizer(base, examples, os.path.join(args.out_dir, "store.jsonl"), new_backend, config)
    summary = asyncio.run(optimizer.run())
    print(json.dumps(optimize.write_results(optimizer, summary, args.out_dir), sort_keys=True))
    return 0

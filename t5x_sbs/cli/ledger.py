"""`t5x-sbs ledger FILE --json`: tokens, cost, statuses and quality of teacher stores (`teacher.ledger`)."""
from __future__ import annotations

import argparse
import json
import os
import sys

from t5x_sbs.teacher.ledger import DEFAULT_PRICES, load_prices, read_stores, summarize


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", help="teacher store(s) (JSONL)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--prices", default=DEFAULT_PRICES, help="price table JSON (USD per 1M tokens)")


def run(args: argparse.Namespace) -> int:
    load_prices(os.path.abspath(args.prices))  # a bad price table fails before any reading
    records, notes = read_stores(args.files)
    for note in notes:
        print(f"ledger: {note}", file=sys.stderr)
    summary = summarize(records, os.path.abspath(args.prices))
    summary["torn_lines"] = len(notes)
    if args.json:
        print(json.dumps(summary, indent=1, sort_keys=True))
        return 0
    print(f"records {summary['records']}  calls {summary['calls']} (replaced answers {summary['replaced_answers']}, "
          f"{summary['replaced_tokens']} tokens)  statuses {summary['statuses']}")
    print("tokens " + "  ".join(f"{k} {v}" for k, v in summary["tokens"].items()) + f"  cost ${summary['cost_usd']:.4f}")
    print(f"teacher label accuracy vs gold {summary['label_accuracy']} (n={summary['label_accuracy_n']})  "
          f"mean rationale {summary['mean_rationale_words']} words")
    for g in summary["groups"]:
        print(f"  {g['teacher']} {g['prompt']} {g['prompt_hash']}: {g['examples']} examples, "
              f"{g['prompt_tokens_per_example']} prompt tokens/example, ${g['cost_usd']:.4f}")
    if "few_over_zero" in summary["prompt_styles"]:
        print(f"few-shot / zero-shot prompt tokens per example: {summary['prompt_styles']['few_over_zero']}x")
    if "feedback" in summary:
        print(f"feedback {summary['feedback']}")
    return 0

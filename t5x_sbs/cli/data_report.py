"""`t5x-sbs data-report`: examples, teacher agreement and parse failures of a dataset split.

What each number means is `t5x_sbs.data.report`'s docstring; broken data fails with exit code 2.
"""
from __future__ import annotations

import argparse
import json
import sys

from t5x_sbs.data import sources
from t5x_sbs.data.report import build_report
from t5x_sbs.teacher import store_reading
from t5x_sbs.user_errors import describe


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data_dir", required=True, help="the paper's datasets/ layout, e.g. ../shared/data")
    parser.add_argument("--dataset", required=True, choices=sorted(sources.DATASETS))
    parser.add_argument("--split", default="test", help="train | validation | test")
    parser.add_argument("--teacher_file", default=None, help="a TeacherRecord JSONL store (default: PaLM replay)")
    parser.add_argument("--spm_path", default=None, help="count rationale tokens with this SentencePiece model")
    parser.add_argument("--teacher_name", default=None, help="read this teacher's records of a store holding several")
    parser.add_argument("--prompt_hash", default=None, help="read this prompt's records (a prefix) of a store holding several")
    parser.add_argument("--samples", choices=store_reading.SAMPLE_MODES, default="first",
                        help="several samples per example: first | vote (majority label) | all")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    reading = store_reading.TeacherReading(args.teacher_name, args.prompt_hash, args.samples)
    try:
        report = build_report(args.dataset, args.data_dir, args.split, args.teacher_file, args.spm_path, reading)
    except (ValueError, OSError) as e:  # DataError/StoreError name the file, line and field
        print(f"data-report: {describe(e)}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, sort_keys=True))
    else:
        for key, value in report.items():
            print(f"{key:>28}: {value}")
    return 0

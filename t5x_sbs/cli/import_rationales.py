"""`t5x-sbs import-rationales`: third-party CoT files (EIT-NLP `eitnlp_cot`) as a teacher store.

The alignment rule and the report's fields are `t5x_sbs.teacher.eitnlp`'s; this prints the
report as one JSON line, or names the bad file with exit code 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from t5x_sbs.data import sources
from t5x_sbs.teacher.eitnlp import EITNLP_DATASETS, write_eitnlp_store


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data_dir", required=True, help="the paper's datasets/ layout, e.g. ../shared/data")
    parser.add_argument("--dataset", required=True, choices=EITNLP_DATASETS)
    parser.add_argument("--file", required=True, help="an eitnlp_cot JSON file")
    parser.add_argument("--output", required=True, help="the TeacherRecord JSONL store to write")
    parser.add_argument("--split", default="train")
    parser.add_argument("--strict", action="store_true", help="fail on a row that matches no example")


def run(args: argparse.Namespace) -> int:
    try:
        report = write_eitnlp_store(args.file, args.dataset, args.data_dir, args.output, args.split, args.strict)
    except (sources.DataError, ValueError) as e:
        print(f"eitnlp: {e}", file=sys.stderr)
        return 2
    print(json.dumps(dataclasses.asdict(report), sort_keys=True))
    return 0

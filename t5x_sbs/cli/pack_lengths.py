"""`t5x-sbs pack-lengths NAME`: token-length percentiles of a task's rows and the packed row
lengths (`TASK_FEATURE_LENGTHS`) suggested from them (`tasks.lengths`)."""
from __future__ import annotations

import argparse
import json
import os
import sys

from t5x_sbs.tasks import catalog, lengths


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="SeqIO task or mixture, e.g. cqa_sbs_llm")
    parser.add_argument("--split", default="train")
    parser.add_argument("--limit", type=int, default=None, help="rows per task")
    parser.add_argument("--percentile", type=float, default=99.0)
    parser.add_argument("--rows_per_pack", type=float, default=2.0)
    parser.add_argument("--multiple", type=int, default=16)
    parser.add_argument("--spm_path", default=None, help="SentencePiece model (else $T5X_SBS_SPM_PATH)")


def run(args: argparse.Namespace) -> int:
    if args.spm_path:
        os.environ["T5X_SBS_SPM_PATH"] = args.spm_path
    catalog.register_all()
    stats = lengths.token_lengths(args.name, args.split, args.limit)
    suggested = lengths.pack_lengths(stats, percentile=args.percentile, rows_per_pack=args.rows_per_pack,
                                     multiple=args.multiple)
    print(json.dumps({"rows": len(stats["inputs"]), "lengths": lengths.summary(stats),
                      "TASK_FEATURE_LENGTHS": suggested}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="t5x-sbs pack-lengths", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

"""Teacher label accuracy and tokens on the built-in task, offline (the scripted teacher).

Few-shot vs zero-shot vs the `optimize-prompt` winner, 1 vs 5 samples with `vote`, and
`--feedback 2`, each through the real CLI, store, ledger and store reading. The scripted
teacher's response to wording, sampling and feedback is a documented simulation
(`t5x_sbs/teacher/scripted.py`), so this measures the machinery end to end and what the
optimiser finds in that simulation, not any real LLM. Tokens are whitespace words.

    python benchmarks/teacher_quality_arith.py [--train 2000] [--out_dir /tmp/teacher_quality]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from t5x_sbs import cli, metrics  # noqa: E402
from t5x_sbs.teacher import store_reading# noqa: E402
from t5x_sbs.data import arith# noqa: E402
from t5x_sbs.teacher import optimize  # noqa: E402
from t5x_sbs.teacher.ledger import summarize  # noqa: E402
from t5x_sbs.teacher.store import read_store  # noqa: E402

TEACHER = "scripted:arith"


def t5x_sbs(*argv: str) -> dict:
    """One CLI call; its last stdout line as JSON."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        if cli.main(list(argv)) != 0:
            raise SystemExit(f"failed: t5x-sbs {' '.join(argv)}")
    return json.loads(out.getvalue().strip().splitlines()[-1])


def accuracy(outputs, ids=None) -> float:
    """Share of examples whose (chosen) teacher label is ok and equals gold."""
    chosen = [o for o in outputs if ids is None or o.example.id in ids]
    right = sum(o.parsed.ok and metrics.labels_equal("arith", o.example.gold, o.parsed.label) for o in chosen)
    return 100.0 * right / len(chosen)


def annotate(data: str, store: str, teacher: str, *flags: str) -> None:
    t5x_sbs("rationales", "--dataset", "arith", "--data_dir", data, "--split", "train", "--teacher", teacher,
            "--out", store, "--no_progress", *flags)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--out_dir", default="/tmp/teacher_quality")
    args = parser.parse_args()
    data = os.path.join(args.out_dir, "data")
    arith.write_splits(data, seed=0, sizes={"train": args.train, "validation": 10, "test": 10})
    examples = arith.load_examples(data, "train")
    opt = t5x_sbs("optimize-prompt", "--dataset", "arith", "--data_dir", data, "--teacher", TEACHER,
                  "--out_dir", os.path.join(args.out_dir, "opt"), "--no_progress",
                  "--subset", "50", "--rounds", "5", "--candidates", "4")
    held_out = {e.id for e in examples} - {e.id for e in optimize.scoring_subset(examples, 50)}
    warm = TEACHER + ",temperature=0.5"  # half the samples repeat sample 0: correlated errors
    runs = [("few-shot", TEACHER, "few_shot", (), "first"), ("zero-shot", TEACHER, "zero_shot", (), "first"),
            ("optimised zero-shot", TEACHER, os.path.join(args.out_dir, "opt", "prompt.json"), (), "first"),
            ("few-shot, 5 samples, first", TEACHER, "few_shot", ("--samples", "5"), "first"),
            ("few-shot, 5 samples, vote", TEACHER, "few_shot", ("--samples", "5"), "vote"),
            ("  same at temperature 0.5", warm, "few_shot", ("--samples", "5"), "vote"),
            ("few-shot, --feedback 2", TEACHER, "few_shot", ("--feedback", "2"), "first")]
    print(f"optimiser: {opt['candidates']} instructions scored in {opt['rounds_done']} rounds, "
          f"{opt['spent_tokens']} tokens; winner: {opt['winner']['instruction']!r}")
    print(f"{'teacher prompt':<30} {'label acc % (train)':>20} {'held-out %':>11} {'tokens/example':>15}")
    for name, teacher, prompt, flags, mode in runs:
        store = os.path.join(args.out_dir, "_".join([teacher, os.path.basename(prompt), *flags]) + ".jsonl")
        annotate(data, store, teacher, "--prompt", prompt, *flags)  # a store shared by runs: asked once
        outputs = store_reading.teacher_from_store(store, examples, reading=store_reading.TeacherReading(samples=mode))
        tokens = summarize(read_store(store).records.values())["tokens"]["total"] / len(examples)
        print(f"{name:<30} {accuracy(outputs):>20.1f} {accuracy(outputs, held_out):>11.1f} {tokens:>15.1f}")


if __name__ == "__main__":
    main()

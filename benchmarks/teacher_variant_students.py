"""What the teacher variants of issue 14 buy the *student* (point 4), from finished demo runs.

Each variant is one `t5x-sbs demo` on the built-in arith task (task seed 0, so the same train,
validation and test questions; checked here by the test file's hash), the same pretrained student
(one --pretrain_dir, one settings hash: pretrained once, by the first run) and the main-job recipe
(early stopping on validation, checkpoint selected on validation only, test scored once); only the
teacher flags differ. The commands, with the main-job recipe of the d128 student (3,000
pretraining steps, at most 3,000 student steps, patience 4, 3 seeds, the sbs_teacher arm); the
baseline is the d128 demo itself (its sbs_teacher rows), linked as `few_shot`:

    t5x-sbs demo --out_dir runs/demo_d128 --model_gin configs/demo_student.gin   # the baseline
    V=runs/teacher_variants; ln -sfn $PWD/runs/demo_d128 $V/few_shot
    C="--methods sbs_teacher --model_gin configs/demo_student.gin --pretrain_dir runs/pretrained --jobs 1"
    t5x-sbs optimize-prompt --dataset arith --data_dir $V/few_shot/data --teacher scripted:arith \
        --out_dir $V/opt --no_progress --subset 50 --rounds 5 --candidates 4
    # two lanes, one core each (taskset -c 0 / -c 1), each running its demos one after another:
    t5x-sbs demo --out_dir $V/feedback2 $C --seeds 0,1,2 --teacher_args "--feedback 2"
    t5x-sbs demo --out_dir $V/vote5_dedup $C --seeds 0,1 --teacher_args "--samples 5" --samples_mode vote
    t5x-sbs demo --out_dir $V/vote5_dedup_seed2 $C --seeds 2 --teacher_args "--samples 5" --samples_mode vote
    t5x-sbs demo --out_dir $V/opt_zero_shot $C --seeds 0,1,2 --teacher_args "--prompt $V/opt/prompt.json"
    python benchmarks/teacher_variant_students.py --root $V [--baseline few_shot]

A `<variant>_seed<k>` folder adds seeds to `<variant>` (one demo each); its teacher answers and
test set must equal the variant's (checked). README, Teacher, holds the table and the earlier
recipe's (1,000 pretraining steps, patience 2; a `vote5` folder from before 2b30594).

Plain zero-shot is not trained: this script annotates the baseline's train split with
`--prompt zero_shot` (scripted teacher, a second) and checks that every label, rationale and status
equals the few-shot store's, so its student would be the baseline's, bit for bit (only the
teacher's prompt tokens differ; printed).

Per variant: the teacher's label accuracy on train as the students read the store (the variant's
`samples` mode; a `failed` example counts as wrong), teacher tokens per train example (the
ledger's total over the train records, all samples and feedback re-asks included), and per
method the test accuracy (mean ± 95 % Student-t CI over seeds) and two differences against the
baseline variant's same method on the same test questions: the paired bootstrap over questions
(seeds averaged; `t5x_sbs.experiments.stats.paired_bootstrap`: question noise only) and the
seed-paired Student-t interval of the per-seed differences (seed noise included; wide with two
seeds). Variants whose results.json is missing are listed as not run.
"""
from __future__ import annotations

import argparse
import contextlib
import glob
import io
import hashlib
import json
import os
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import numpy as np  # noqa: E402

from t5x_sbs import cli, metrics  # noqa: E402
from t5x_sbs.data import arith  # noqa: E402
from t5x_sbs.experiments import stats  # noqa: E402
from t5x_sbs.teacher import store_reading  # noqa: E402
from t5x_sbs.teacher.ledger import summarize  # noqa: E402
from t5x_sbs.teacher.store import read_store  # noqa: E402

# (folder under --root, title, store reading mode)
VARIANTS = (("few_shot", "few-shot (baseline)", "first"), ("feedback2", "few-shot, --feedback 2", "first"),
            ("vote5", "few-shot, 5 samples, vote (identical rationale copies as rows, before 2b30594)", "vote"),
            ("vote5_dedup", "few-shot, 5 samples, vote (distinct rationales)", "vote"),
            ("opt_zero_shot", "optimised zero-shot", "first"))


def train_store(run_dir: str) -> str:
    return os.path.join(run_dir, "teacher", "train.jsonl")


def hash_of_test_set(run_dir: str) -> str:
    return file_hash(os.path.join(run_dir, "data", "test.jsonl"))


def file_hash(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:12]


def teacher_quality(run_dir: str, mode: str) -> tuple[float, float]:
    """(label accuracy % on train as read with `mode`, teacher tokens per train example)."""
    data, store = os.path.join(run_dir, "data"), train_store(run_dir)
    examples = arith.load_examples(data, "train")
    ids = {e.id for e in examples}
    records = [r for r in read_store(store).records.values() if r.split == "train" and r.id in ids]
    outputs = store_reading.teacher_from_store(store, examples, require_all=False,
                                               reading=store_reading.TeacherReading(samples=mode))
    right = sum(o.parsed.ok and metrics.labels_equal("arith", o.example.gold, o.parsed.label) for o in outputs)
    return 100.0 * right / len(examples), summarize(records)["tokens"]["total"] / len(examples)


def answers(path: str) -> dict:
    """A store's train answers by (id, sample): what the students read (not timings or usage)."""
    return {(r.id, r.sample): (r.label, r.rationale, r.status) for r in read_store(path).records.values()
            if r.split == "train"}


def zero_shot_check(base_dir: str) -> str:
    """Annotate the baseline's train split zero-shot; say whether its store equals the few-shot one."""
    with tempfile.TemporaryDirectory() as tmp:
        store = os.path.join(tmp, "train.jsonl")
        with contextlib.redirect_stdout(io.StringIO()):
            rc = cli.main(["rationales", "--dataset", "arith", "--data_dir", os.path.join(base_dir, "data"),
                           "--split", "train", "--teacher", "scripted:arith", "--prompt", "zero_shot",
                           "--out", store, "--no_progress"])
        if rc != 0:
            return "zero-shot check: the annotation failed"
        few, zero = answers(train_store(base_dir)), answers(store)
        tokens = summarize(list(read_store(store).records.values()))["tokens"]["total"] / len(zero)
    same = sum(few.get(k) == v for k, v in zero.items())
    verdict = "identical: its student is the baseline's" if same == len(few) == len(zero) else "DIFFERENT: train it"
    return (f"zero-shot: {same}/{len(few)} train answers equal the few-shot store's (label, rationale, status): "
            f"{verdict}; {tokens:.1f} teacher tokens/example")


def correct_matrix(rows: list[dict], method: str) -> np.ndarray:
    chosen = sorted((r for r in rows if r["method"] == method), key=lambda r: r["seed"])
    return np.array([r["test_correct"] for r in chosen], float)


def by_seed(rows: list[dict], method: str) -> dict[int, np.ndarray]:
    return {r["seed"]: np.array(r["test_correct"], float) for r in rows if r["method"] == method}


def variant_rows(root: str, name: str) -> list[dict]:
    """Every seed's row of a variant: its folder's results.json and those of `<name>_seed*` folders
    (more seeds, one demo each), which must hold the same teacher answers and test set."""
    run_dir = os.path.join(root, name)
    rows, seeds = [], set()
    for folder in [run_dir, *sorted(glob.glob(f"{run_dir}_seed*"))]:
        path = os.path.join(folder, "results.json")
        if not os.path.exists(path):
            continue
        if folder != run_dir:
            same_test = hash_of_test_set(folder) == hash_of_test_set(run_dir)
            if not same_test or answers(train_store(folder)) != answers(train_store(run_dir)):
                raise SystemExit(f"{folder}: its teacher answers or test set differ from {run_dir}'s")
        with open(path, encoding="utf-8") as f:
            found = json.load(f)["rows"]
        twice = seeds & {(r["method"], r["seed"]) for r in found}
        if twice:
            raise SystemExit(f"{folder}: seeds already read from another folder: {sorted(twice)}")
        seeds |= {(r["method"], r["seed"]) for r in found}
        rows += found
    return rows


def load(root: str) -> dict[str, dict]:
    runs = {}
    for name, title, mode in VARIANTS:
        run_dir = os.path.join(root, name)
        if not os.path.exists(os.path.join(run_dir, "results.json")):
            continue
        accuracy, tokens = teacher_quality(run_dir, mode)
        runs[name] = {"title": title, "rows": variant_rows(root, name), "accuracy": accuracy, "tokens": tokens,
                      "test_hash": hash_of_test_set(run_dir)}
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="runs/teacher_variants")
    parser.add_argument("--baseline", default="few_shot")
    args = parser.parse_args()
    runs = load(args.root)
    base = runs.get(args.baseline)
    if base is None:
        raise SystemExit(f"no {args.root}/{args.baseline}/results.json")
    hashes = {r["test_hash"] for r in runs.values()}
    if len(hashes) != 1:
        raise SystemExit(f"the variants' test sets differ ({hashes}): no paired comparison")
    students = {r.get("pretrained") for run in runs.values() for r in run["rows"]}
    if len(students) != 1:
        raise SystemExit(f"the variants start from different pretrained students: {students}")
    print(f"same pretrained student in every variant: {students.pop()}")
    print(f"same test set in every variant (sha256 {hashes.pop()}); missing: "
          f"{[n for n, _, _ in VARIANTS if n not in runs] or 'none'}")
    print(zero_shot_check(os.path.join(args.root, args.baseline)))
    print("| teacher variant | label acc % (train) | tokens/example | method | seeds | student test acc % "
          "(mean ± 95 % CI) | diff vs baseline, bootstrap over questions [95 % CI], p | "
          "diff, seed-paired t [95 % CI] |")
    print("|---|---:|---:|---|---:|---:|---|---|")
    for name, run in runs.items():
        for method in sorted({r["method"] for r in run["rows"]}):
            correct = correct_matrix(run["rows"], method)
            interval = stats.mean_ci(correct.mean(axis=1))
            base_correct = correct_matrix(base["rows"], method)
            diff = seeds = "—"
            if name != args.baseline and len(base_correct):
                d = stats.paired_bootstrap(correct, base_correct)
                p = f"p < {2 / d.resamples:.1g}" if d.p_value == 0 else f"p = {d.p_value:.3g}"
                diff = f"{100 * d.difference:+.1f} [{100 * d.low:+.1f}, {100 * d.high:+.1f}], {p}"
                mine, theirs = by_seed(run["rows"], method), by_seed(base["rows"], method)
                common = sorted(set(mine) & set(theirs))  # seed s vs seed s
                s = stats.mean_ci([mine[k].mean() - theirs[k].mean() for k in common])
                seeds = f"{100 * s.mean:+.1f} [{100 * s.low:+.1f}, {100 * s.high:+.1f}]" if len(common) > 1 else "—"
            print(f"| {run['title']} | {run['accuracy']:.1f} | {run['tokens']:.1f} | {method} | {len(correct)} | "
                  f"{interval} | {diff} | {seeds} |")


if __name__ == "__main__":
    main()

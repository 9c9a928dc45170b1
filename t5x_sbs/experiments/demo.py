"""`t5x-sbs demo`: the main job, end to end, offline on a CPU.

1. generate the built-in arithmetic task (train/validation/test, seeded);
2. annotate train with the `scripted:` teacher through the rationale store and ledger;
3. pretrain the student once with span corruption (`experiments.pretrained`: ../shared/data's
   train text + the task's train inputs; kept under --pretrain_dir by a hash of its settings and
   reused), then train it three ways, each for every seed, to early stopping on validation
   accuracy: standard finetuning (gold labels), standard distillation (teacher labels),
   distilling step-by-step (teacher labels + rationales);
4. score each from the label prefix alone on validation and test (the checkpoint selected
   on validation), export the best student to Hugging Face format and answer a test
   question with transformers;
5. print the table (mean ± 95 % CI over seeds, and step-by-step − finetuning with a paired
   bootstrap on the same test questions); write results.md/.csv/.png/.json to --out_dir.

The same command runs the real thing: `--teacher gemini:MODEL` (a key in GEMINI_API_KEY),
`--dataset svamp --data_dir ../shared/data` (a paper-layout dataset), `--initial_checkpoint
DIR --model_gin gin/models/t5_1_1/base.gin --spm_path DIR/spiece.model` (pretrained T5).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shlex
import sys
import time

from t5x_sbs.experiments import runner, tables
from t5x_sbs.data import arith
from t5x_sbs.user_errors import int_list, non_negative_float, non_negative_int, positive_float, positive_int

DEMO_METHODS = ("standard_finetune", "standard_distill", "sbs_teacher")
SPLITS = ("train", "validation", "test")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--out_dir", default="runs/demo", help="everything the demo writes")
    add("--dataset", default="arith", help="arith (built in, generated) or a paper dataset, e.g. svamp")
    add("--data_dir", default="", help="paper-layout data (../shared/data) for --dataset other than arith")
    add("--teacher", default="scripted:arith", help="scripted:arith[,error_rate=R] | gemini:MODEL | replay:palm")
    add("--teacher_args", default="", help="extra flags for `t5x-sbs rationales` (e.g. '--rpm 60')")
    add("--methods", default=",".join(DEMO_METHODS), help=f"comma-separated, from {list(tables.METHODS)}")
    add("--model_gin", default="configs/demo_student.gin")
    add("--initial_checkpoint", default="", help="pretrained checkpoint (ours or an HF dir): finetune it")
    add("--spm_path", default="", help="SentencePiece model (default: trained on the task text)")
    add("--vocab_size", type=positive_int, default=400)
    add("--train_steps", type=positive_int, default=1000, help="at most this many steps per student (early stopping ends most sooner)")
    add("--batch_size", type=positive_int, default=16)
    add("--eval_every", type=positive_int, default=150, help="validation decode (and checkpoint) interval")
    add("--learning_rate", type=positive_float, default=5e-3)
    add("--rationale_weight", type=non_negative_float, default=1.0)
    add("--inputs_length", type=positive_int, default=128)
    add("--targets_length", type=positive_int, default=32)
    add("--seed", type=int, default=0)
    add("--train_size", type=positive_int, default=arith.DEFAULT_SIZES["train"])
    add("--eval_size", type=positive_int, default=arith.DEFAULT_SIZES["test"], help="test examples (validation: 60%%)")
    add("--seeds", type=int_list, default="0,1,2", help="comma-separated student seeds (each method trains once per seed)")
    add("--early_stopping_patience", type=positive_int, default=2,
        help="stop a student after this many validation decodes (every --eval_every steps) without improvement")
    add("--pretrain_steps", type=non_negative_int, default=600, help="span-corruption steps of the student (0: from scratch)")
    add("--pretrain_batch_size", type=positive_int, default=32)
    add("--pretrain_corpus", choices=("shared", "task"), default="shared",
        help="shared: ../shared/data's train text + the task's train inputs; task: the task's train inputs only")
    add("--pretrain_dir", default="runs/pretrained", help="pretrained students, one per settings hash (reused)")
    add("--quick", action="store_true", help=(
        "a smaller version: 600 train / 200 test problems, students of at most 300 steps "
        "(validation every 50, patience 2), 200 pretraining steps on the task's own text only (no "
        "../shared/data corpus); still 3 seeds. Gives up: data, training length and the general corpus, "
        "so the CIs are wider and the pretrained student knows less"))


QUICK = {"train_size": 600, "eval_size": 200, "train_steps": 300, "eval_every": 50, "early_stopping_patience": 2,
         "pretrain_steps": 200, "pretrain_corpus": "task"}


def apply_quick(args) -> None:
    if args.quick:
        for name, value in QUICK.items():
            setattr(args, name, value)


def _say(text: str) -> None:
    print(text, flush=True)


def paper_data(args) -> str:
    """Step 1 for a paper-layout dataset: check that --data_dir holds it; say what the students see."""
    from t5x_sbs.data import sources

    if not args.data_dir:
        raise SystemExit(f"demo: --dataset {args.dataset} needs --data_dir (e.g. ../shared/data)")
    try:
        sizes = {split: len(sources.split_examples(args.dataset, args.data_dir, split)) for split in SPLITS}
    except ValueError as e:  # DataError names the file; the flags say where it was looked for
        raise SystemExit(f"demo: --dataset {args.dataset} --data_dir {args.data_dir}: {e}") from None
    _say(f"[1/5] dataset {args.dataset}: {sizes} examples (train/validation/test as the tasks split them) "
         f"in {args.data_dir}")
    return args.data_dir


def prepare_data(args) -> str:
    """Step 1: the dataset files; returns the data dir the teacher and tasks read."""
    if args.dataset != "arith":
        return paper_data(args)
    data_dir = os.path.join(args.out_dir, "data")
    sizes = {"train": args.train_size, "validation": max(1, int(0.6 * args.eval_size)), "test": args.eval_size}
    paths = arith.write_splits(data_dir, seed=args.seed, sizes=sizes)
    _say(f"[1/5] built-in task: {sizes} arithmetic word problems -> {data_dir}")
    sample = next(arith.read_split(paths["train"]))
    _say(f"      e.g. Q: {sample['question']}\n           rationale: {sample['rationale']}  label: {sample['answer']}")
    return data_dir


def annotate(args, data_dir: str) -> str:
    """Step 2: the teacher's rationales and labels for train, through store + ledger."""
    from t5x_sbs import cli

    store = os.path.join(args.out_dir, "teacher", "train.jsonl")
    os.makedirs(os.path.dirname(store), exist_ok=True)  # the store's folder must exist
    # All splits: validation/test rationales let the trainer report the rationale loss there too.
    for split in SPLITS:
        argv = ["rationales", "--dataset", args.dataset, "--data_dir", data_dir, "--split", split,
                "--teacher", args.teacher, "--out", store, "--no_progress", "--seed", str(args.seed)]
        with contextlib.redirect_stdout(io.StringIO()):  # shlex: quoted values (paths) stay whole
            if cli.main(argv + shlex.split(args.teacher_args)) != 0:
                raise SystemExit(f"demo: the teacher run on {split} failed")
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):  # the ledger subcommand's JSON, kept beside the store
        cli.main(["ledger", store, "--json"])
    summary = json.loads(buffer.getvalue())
    with open(os.path.join(args.out_dir, "teacher", "ledger.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    _say(f"[2/5] teacher {args.teacher}: {summary['records']} records {summary['statuses']}, "
         f"label accuracy vs gold {summary.get('label_accuracy')}, cost ${summary.get('cost_usd', 0):.4f} -> {store}")
    report_coverage(args, data_dir, store)
    return store


def report_coverage(args, data_dir: str, store: str) -> None:
    """Says when the teacher was asked only part of the data (`--teacher_args '--limit N'`): the
    tasks then train every method on the annotated train examples (register's coverage binding)."""
    from t5x_sbs.records import read_records
    from t5x_sbs.cli import rationales as teacher_cli

    asked = {r.id for r in read_records(store)}
    counts = {}
    for split in SPLITS:
        ids = [e.id for e in teacher_cli.load_examples(args.dataset, data_dir, split)]
        counts[split] = (sum(i in asked for i in ids), len(ids))
    if any(have < total for have, total in counts.values()):
        _say("      teacher coverage " + ", ".join(f"{s} {h}/{t}" for s, (h, t) in counts.items())
             + ": every student trains on the annotated train examples only; validation/test labels "
             "stay gold on all examples")


def register(args, data_dir: str, store: str) -> tuple[str, ...]:
    """The dataset's SeqIO tasks read the teacher store: the built-in task through the JSONL
    registration, paper datasets through a gin binding (returned) of `tasks.config.teacher_files`.
    The store may cover part of the data (`--limit`): 'annotated' coverage trains every method on
    the same annotated examples instead of failing on the unasked ones (tasks.config.teacher_coverage)."""
    coverage = 'tasks.config.teacher_coverage.mode = "annotated"'
    if args.dataset == "arith":
        from t5x_sbs.tasks.custom import register_jsonl_dataset

        register_jsonl_dataset(
            "arith", train_path=os.path.join(data_dir, "train.jsonl"),
            validation_path=os.path.join(data_dir, "validation.jsonl"),
            test_path=os.path.join(data_dir, "test.jsonl"), input_fields=("question",),
            label_field="answer", id_field="id", teacher_file=store)
        return (coverage,)
    return (f"tasks.config.teacher_files.files = {json.dumps({args.dataset: os.path.abspath(store)})}", coverage)


def vocabulary(args, data_dir: str, store: str) -> str:
    """Step 3a: a SentencePiece model on the task text (inputs, labels, teacher rationales)."""
    if args.spm_path:
        return args.spm_path
    from t5x_sbs.records import read_records
    from t5x_sbs.cli import rationales as teacher_cli

    texts = []
    for split in ("train", "validation"):
        for e in teacher_cli.load_examples(args.dataset, data_dir, split):
            texts += [e.text, e.gold or ""]
    return vocabulary_from_texts(args, texts + [r.rationale or "" for r in read_records(store)])


def vocabulary_from_texts(args, texts: list[str]) -> str:
    from t5x_sbs.data.vocab import train_sentencepiece
    from t5x_sbs.tasks import config as task_config

    prefixes = " ".join(task_config.prefixes().values())
    path = train_sentencepiece(texts + [prefixes] * 20, os.path.join(args.out_dir, "vocab", "spm.model"),
                               args.vocab_size)
    import sentencepiece as spm

    pieces = spm.SentencePieceProcessor(model_file=path).get_piece_size()  # the trainer may stop short
    _say(f"      SentencePiece vocabulary ({pieces} pieces, asked {args.vocab_size}) trained on {len(texts)} texts -> {path}")
    return path


def student_spec(args, method: str, seed: int, spm_path: str, data_dir: str, bindings: tuple[str, ...],
                 student: dict) -> runner.TrainSpec:
    mixture_method, source = tables.check_method(method)
    from t5x_sbs.names import mixture_name

    return runner.TrainSpec(
        model_dir=os.path.join(args.out_dir, "models", f"{method}_seed{seed}"),
        mixture=mixture_name(args.dataset, mixture_method, source),
        model_gin=args.model_gin, spm_path=spm_path, data_dir=data_dir if args.dataset != "arith" else "",
        train_steps=args.train_steps, batch_size=args.batch_size,
        feature_lengths=(("inputs", args.inputs_length), ("targets", args.targets_length)),
        rationale_weight=args.rationale_weight, seed=seed, eval_every=args.eval_every,
        learning_rate=args.learning_rate, initial_checkpoint=student["initial_checkpoint"],
        vocab_size=student["vocab_rows"], early_stopping_patience=args.early_stopping_patience, bindings=bindings)


def train_and_score(args, method: str, seed: int, spm_path: str, data_dir: str, bindings: tuple[str, ...],
                    student: dict) -> dict:
    """Step 3b + 4a: one student and seed; returns its result row (with per-question correctness)."""
    mixture_method, _ = tables.check_method(method)
    spec = student_spec(args, method, seed, spm_path, data_dir, bindings, student)
    start = time.time()
    final = runner.train(spec)
    scored = runner.score(spec.model_dir)
    correct = runner.test_correctness(spec)
    row = {"dataset": args.dataset, "method": method, "fraction": 1.0, "size": os.path.basename(args.model_gin)[:-4],
           "rationale_weight": args.rationale_weight if mixture_method == "sbs" else 0.0, "seed": seed,
           **scored, "train_steps": args.train_steps, "steps_run": final.get("step"),
           "wall_s": round(time.time() - start, 1), "model_dir": spec.model_dir, "final_loss": final.get("loss"),
           "pretrained": student["initial_checkpoint"], "test_correct": correct}
    _say(f"      {tables.METHOD_TITLES[method]}, seed {seed}: {row['steps_run']} steps (best {row['best_step']}), "
         f"validation {100 * row['val_accuracy']:.1f}%, test {100 * row['test_accuracy']:.1f}% ({row['wall_s']:.0f} s)")
    return row


def pretrained_student(args, data_dir: str, spm_path: str) -> dict:
    """Step 3a': the student the methods start from: --initial_checkpoint, or our own
    span-corruption pretraining (reused when its settings match), or none (--pretrain_steps 0)."""
    if args.initial_checkpoint or args.pretrain_steps <= 0:
        return {"initial_checkpoint": args.initial_checkpoint, "vocab_rows": None, "spm_path": spm_path}
    from t5x_sbs.experiments import pretrained
    from t5x_sbs.cli import rationales as teacher_cli
    from t5x_sbs.tasks import config as task_config

    task_texts = [e.text for e in teacher_cli.load_examples(args.dataset, data_dir, "train")]
    shared = (args.data_dir or task_config.data_dir()) if args.pretrain_corpus == "shared" else None
    docs, where = pretrained.corpus_texts(task_texts, shared)
    spec = pretrained.PretrainSpec(root=args.pretrain_dir, model_gin=args.model_gin, steps=args.pretrain_steps,
                                   batch_size=args.pretrain_batch_size, inputs_length=args.inputs_length,
                                   vocab_size=max(args.vocab_size, 1000) if shared else args.vocab_size, seed=0)
    result = pretrained.pretrain(spec, docs, say=_say)
    _say(f"      pretrained student ({where}; {'reused' if result.reused else 'trained'}): {result.model_dir}")
    return {"initial_checkpoint": result.model_dir, "vocab_rows": result.vocab_rows, "spm_path": result.spm_path}


def export_and_answer(args, row: dict, spm_path: str, data_dir: str) -> dict:
    """Step 4b: the best student -> HF dir -> transformers answers one test question."""
    import torch
    import transformers

    from t5x_sbs.convert.hf_export import export_hf
    from t5x_sbs.cli import rationales as teacher_cli
    from t5x_sbs.tasks import config as task_config

    hf_dir = os.path.join(args.out_dir, "hf_student")
    export_hf(runner.best_step_dir(row["model_dir"]), hf_dir, vocab=spm_path)
    model = transformers.T5ForConditionalGeneration.from_pretrained(hf_dir).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(hf_dir)
    example = teacher_cli.load_examples(args.dataset, data_dir, "test")[0]
    prompt = task_config.prefixes()["label"] + example.text
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=args.targets_length, do_sample=False)
    answer = tokenizer.decode(out[0], skip_special_tokens=True).strip()
    _say(f"[4/5] exported {row['method']} -> {hf_dir}; transformers answers\n      {prompt!r}\n"
         f"      -> {answer!r} (gold {example.gold!r})")
    return {"hf_dir": hf_dir, "question": prompt, "answer": answer, "gold": example.gold}


def majority_baseline(args, data_dir: str) -> str:
    """What "chance" means here: always answering the most frequent gold train label."""
    import collections

    from t5x_sbs.cli import rationales as teacher_cli

    train = collections.Counter(e.gold for e in teacher_cli.load_examples(args.dataset, data_dir, "train"))
    label = train.most_common(1)[0][0]
    test = [e.gold for e in teacher_cli.load_examples(args.dataset, data_dir, "test")]
    return (f"Baseline: always answering the most frequent train label ({label!r}) scores "
            f"{100 * sum(g == label for g in test) / max(1, len(test)):.1f}% on test.")


def write_outputs(args, rows: list[dict], answer: dict, teacher_store: str, data_dir: str, comparison=None) -> None:
    """Step 5: table on stdout; Markdown, CSV, PNG and a JSON summary (every seed's row) in out_dir."""
    import dataclasses

    from t5x_sbs.experiments import plots

    md = tables.ci_table(rows)
    if comparison is not None:
        md += f"\n\nDistilling step-by-step − standard finetuning: {comparison}."
    md += "\n\n" + majority_baseline(args, data_dir)
    paths = {k: os.path.join(args.out_dir, f"results.{k}") for k in ("md", "csv", "png", "json")}
    with open(paths["md"], "w", encoding="utf-8") as f:
        f.write(f"# Demo results ({args.dataset}, teacher {args.teacher})\n\n{md}\n\n"
                f"HF export answer: {answer['question']!r} -> {answer['answer']!r} (gold {answer['gold']!r})\n")
    tables.write_csv(rows, paths["csv"])
    plots.plot_methods_bar(rows, paths["png"], f"{args.dataset}: test accuracy from the label prefix")
    with open(paths["json"], "w", encoding="utf-8") as f:
        json.dump({"rows": rows, "hf_answer": answer, "teacher_store": teacher_store,
                   "sbs_minus_finetune": dataclasses.asdict(comparison) if comparison else None}, f, indent=1, default=str)
    _say("[5/5] results (test accuracy at the validation-selected checkpoint, answered from the label prefix):\n")
    _say(md)
    _say("\n" + "\n".join(f"wrote {p}" for p in paths.values()))


def compare(rows: list[dict], a: str = "sbs_teacher", b: str = "standard_finetune"):
    """a − b on the same test questions (seeds averaged per question), or None without both."""
    from t5x_sbs.experiments import stats
    import numpy as np

    by = {m: np.array([r["test_correct"] for r in rows if r["method"] == m]) for m in (a, b)}
    if not all(len(v) for v in by.values()):
        return None
    return stats.paired_bootstrap(by[a], by[b])


def run(args) -> int:
    start = time.time()
    apply_quick(args)
    os.makedirs(args.out_dir, exist_ok=True)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    for method in methods:
        tables.check_method(method)
    runner.enable_compilation_cache(os.path.join(args.out_dir, "jax_cache"))
    data_dir = prepare_data(args)
    store = annotate(args, data_dir)
    bindings = register(args, data_dir, store)
    spm_path = args.spm_path or (None if args.pretrain_steps > 0 and not args.initial_checkpoint
                                 else vocabulary(args, data_dir, store))
    student = pretrained_student(args, data_dir, spm_path)
    spm_path = student["spm_path"]
    _say(f"[3/5] training {len(methods)} students x {len(seeds)} seeds ({args.model_gin}, at most {args.train_steps} "
         f"steps, early stopping patience {args.early_stopping_patience}, batch {args.batch_size})")
    rows = [train_and_score(args, method, seed, spm_path, data_dir, bindings, student)
            for method in methods for seed in seeds]
    best = max(rows, key=lambda r: r["val_accuracy"])  # selected on validation only
    answer = export_and_answer(args, best, spm_path, data_dir)
    write_outputs(args, rows, answer, store, data_dir, compare(rows))
    _say(f"demo finished in {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))

"""What every student of a demo or sweep shares: the data, the teacher store, the vocabulary.

Steps 1, 2 and 3a of `t5x-sbs demo` (and what a sweep makes once under its out_dir):
`prepare_data` writes (arith) or checks (a paper dataset) the splits, `annotate` asks the
teacher for every split into one store through `teacher.annotation` and keeps the ledger's
summary beside it, `register` makes the tasks read that store, `vocabulary` trains a
SentencePiece model on the task text. Progress lines go to `say`.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Callable

import sentencepiece as spm

from t5x_sbs.data import arith, sources, vocab
from t5x_sbs.records import read_records
from t5x_sbs.tasks import catalog
from t5x_sbs.tasks import config as task_config
from t5x_sbs.tasks.custom import register_jsonl_dataset
from t5x_sbs.teacher import annotation, ledger

SPLITS = ("train", "validation", "test")
log = logging.getLogger(__name__)
Say = Callable[[str], None]


def say_line(text: str) -> None:
    print(text, flush=True)


class PreparationError(ValueError):
    """A dataset or teacher problem found while preparing (the CLI prints it as one line)."""


@dataclasses.dataclass(frozen=True)
class DataSettings:
    """The shared inputs of a demo or sweep (the demo's data and teacher flags)."""

    out_dir: str
    dataset: str = "arith"          # arith (built in, generated) or a paper dataset, e.g. svamp
    data_dir: str = ""              # paper-layout data for a dataset other than arith
    teacher: str = "scripted:arith"
    seed: int = 0                   # arith generation and the teacher's seed
    train_size: int = arith.DEFAULT_SIZES["train"]
    eval_size: int = arith.DEFAULT_SIZES["test"]  # test examples (validation: 60 %)
    arith_difficulty: arith.Difficulty = arith.Difficulty()  # the built-in task (dataset arith)
    vocab_size: int = 400
    spm_path: str = ""              # a SentencePiece model (default: trained on the task text)
    ask: annotation.AskSettings = dataclasses.field(default_factory=annotation.AskSettings)
    teacher_seed: int | None = None  # None: `seed`
    samples_mode: str = "first"     # how the tasks read several samples: first | vote | all

    @property
    def store(self) -> str:
        return os.path.join(self.out_dir, "teacher", "train.jsonl")


def paper_data(settings: DataSettings, say: Say = say_line) -> str:
    """Step 1 for a paper-layout dataset: check that data_dir holds it; say what the students see."""
    if not settings.data_dir:
        raise PreparationError(f"--dataset {settings.dataset} needs --data_dir (e.g. ../shared/data)")
    try:
        sizes = {split: len(sources.split_examples(settings.dataset, settings.data_dir, split)) for split in SPLITS}
    except ValueError as e:  # DataError names the file; the flags say where it was looked for
        raise PreparationError(f"--dataset {settings.dataset} --data_dir {settings.data_dir}: {e}") from None
    say(f"[1/5] dataset {settings.dataset}: {sizes} examples (train/validation/test as the tasks split them) "
        f"in {settings.data_dir}")
    return settings.data_dir


def prepare_data(settings: DataSettings, say: Say = say_line) -> str:
    """Step 1: the dataset files; returns the data dir the teacher and tasks read."""
    if settings.dataset != "arith":
        return paper_data(settings, say)
    data_dir = os.path.join(settings.out_dir, "data")
    sizes = {"train": settings.train_size, "validation": max(1, int(0.6 * settings.eval_size)),
             "test": settings.eval_size}
    paths = arith.write_splits(data_dir, seed=settings.seed, sizes=sizes, difficulty=settings.arith_difficulty)
    say(f"[1/5] built-in task: {sizes} arithmetic word problems ({settings.arith_difficulty}) -> {data_dir}")
    sample = next(arith.read_split(paths["train"]))
    say(f"      e.g. Q: {sample['question']}\n           rationale: {sample['rationale']}  label: {sample['answer']}")
    return data_dir


def annotation_job(settings: DataSettings, data_dir: str, split: str) -> annotation.AnnotationJob:
    """The teacher run of one split into the shared store (no progress bar: the demo prints its steps)."""
    ask = dataclasses.replace(settings.ask, options=dataclasses.replace(settings.ask.options, progress=False))
    seed = settings.seed if settings.teacher_seed is None else settings.teacher_seed
    return annotation.AnnotationJob(dataset=settings.dataset, data_dir=data_dir, split=split,
                                    teacher=settings.teacher, out=settings.store, seed=seed, ask=ask)


def ledger_summary(store: str) -> dict:
    """What `t5x-sbs ledger STORE --json` prints, as a dict."""
    records, notes = ledger.read_stores([store])
    for note in notes:
        log.warning("ledger: %s", note)
    summary = ledger.summarize(records)
    summary["torn_lines"] = len(notes)
    return summary


def annotate(settings: DataSettings, data_dir: str, say: Say = say_line) -> str:
    """Step 2: the teacher's rationales and labels for every split, through store + ledger."""
    store = settings.store
    os.makedirs(os.path.dirname(store), exist_ok=True)  # the store's folder must exist
    # All splits: validation/test rationales let the trainer report the rationale loss there too.
    for split in SPLITS:
        try:
            annotation.annotate(annotation_job(settings, data_dir, split))
        except ValueError as e:  # bad data, prompt, flags or store lines
            raise PreparationError(f"the teacher run on {split} failed: {e}") from None
    summary = ledger_summary(store)
    with open(os.path.join(settings.out_dir, "teacher", "ledger.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1, sort_keys=True)
    say(f"[2/5] teacher {settings.teacher}: {summary['records']} records {summary['statuses']}, "
        f"label accuracy vs gold {summary.get('label_accuracy')}, cost ${summary.get('cost_usd', 0):.4f} -> {store}")
    report_coverage(settings, data_dir, store, say)
    return store


def report_coverage(settings: DataSettings, data_dir: str, store: str, say: Say = say_line) -> None:
    """Says when the teacher was asked only part of the data (`--teacher_args '--limit N'`): the
    tasks then train every method on the annotated train examples (register's coverage binding)."""
    asked = {r.id for r in read_records(store)}
    counts = {}
    for split in SPLITS:
        ids = [e.id for e in annotation.load_examples(settings.dataset, data_dir, split)]
        counts[split] = (sum(i in asked for i in ids), len(ids))
    if any(have < total for have, total in counts.values()):
        say("      teacher coverage " + ", ".join(f"{s} {h}/{t}" for s, (h, t) in counts.items())
            + ": every student trains on the annotated train examples only; validation/test labels "
            "stay gold on all examples")


def register(settings: DataSettings, data_dir: str, store: str) -> tuple[str, ...]:
    """The dataset's SeqIO tasks read the teacher store: the built-in task through the JSONL
    registration, paper datasets through a gin binding (returned) of `tasks.config.teacher_files`.
    The store may cover part of the data (`--limit`): 'annotated' coverage trains every method on
    the same annotated examples instead of failing on the unasked ones (tasks.config.teacher_coverage);
    samples_mode other than 'first' binds tasks.config.teacher_reading.samples."""
    reading = ('tasks.config.teacher_coverage.mode = "annotated"',)
    if settings.samples_mode != "first":  # several samples per example (`--samples N`): vote or all
        reading += (f"tasks.config.teacher_reading.samples = {json.dumps(settings.samples_mode)}",)
    if settings.dataset == "arith":
        register_jsonl_dataset(
            "arith", train_path=os.path.join(data_dir, "train.jsonl"),
            validation_path=os.path.join(data_dir, "validation.jsonl"),
            test_path=os.path.join(data_dir, "test.jsonl"), input_fields=("question",),
            label_field="answer", id_field="id", teacher_file=store)
        return reading
    return (f"tasks.config.teacher_files.files = {json.dumps({settings.dataset: os.path.abspath(store)})}", *reading)


def vocabulary(settings: DataSettings, data_dir: str, store: str, say: Say = say_line) -> str:
    """Step 3a: a SentencePiece model on the task text (inputs, labels, teacher rationales)."""
    if settings.spm_path:
        return settings.spm_path
    texts = []
    for split in ("train", "validation"):
        for e in annotation.load_examples(settings.dataset, data_dir, split):
            texts += [e.text, e.gold or ""]
    return vocabulary_from_texts(settings, texts + [r.rationale or "" for r in read_records(store)], say)


def vocabulary_from_texts(settings: DataSettings, texts: list[str], say: Say = say_line) -> str:
    prefixes = " ".join(task_config.prefixes().values())
    path = vocab.train_sentencepiece(texts + [prefixes] * 20, os.path.join(settings.out_dir, "vocab", "spm.model"),
                                     settings.vocab_size)
    pieces = spm.SentencePieceProcessor(model_file=path).get_piece_size()  # the trainer may stop short
    say(f"      SentencePiece vocabulary ({pieces} pieces, asked {settings.vocab_size}) trained on {len(texts)} texts "
        f"-> {path}")
    return path


def prepare_shared(settings: DataSettings, say: Say = say_line) -> tuple[str, str, tuple[str, ...]]:
    """Data, teacher store and vocabulary of a sweep, made once under out_dir (the demo's steps
    1-3a); returns (data_dir, spm_path, gin bindings for the tasks). Paper datasets with a
    `replay:` teacher read the stored PaLM outputs directly (no store needed)."""
    data_dir = prepare_data(settings, say)
    if settings.dataset != "arith" and settings.teacher.startswith("replay:"):
        catalog.register_all()
        spm_path = settings.spm_path or vocabulary_from_texts(
            settings, vocab.dataset_texts(settings.dataset, data_dir, ("train",)), say)
        return data_dir, spm_path, ()
    store = annotate(settings, data_dir, say)
    bindings = register(settings, data_dir, store)
    return data_dir, vocabulary(settings, data_dir, store, say), bindings

"""The offline pretraining corpus: unlabeled text from the *train* views of ../shared/data.

Documents (one text each, `Document.source` says where it came from):
- task inputs of the train views (`sources.split_examples(ds, 'train')`, i.e. without the 10%
  validation carve-out of cqa / svamp / gsm8k / asdiv): CQA questions with their choices, SVAMP
  and ASDiv problems, GSM8K questions;
- their human text: GSM8K train solutions (calculator annotations removed), CoS-E train
  explanations;
- teacher rationales of those train examples: the paper's PaLM outputs (cqa, svamp, and the
  ANLI-R1 train outputs, whose inputs are not here) and the third-party `eitnlp_cot` sets,
  aligned to our ids by `t5x_sbs.teacher.eitnlp` (rows of our validation/test are never used).
e-SNLI contributes nothing (its train inputs and rationales are absent).

Decontamination: every validation and test question, premise, hypothesis and (SVAMP/ASDiv)
problem body of every dataset is an *eval fragment*; a document whose normalised text (lower
case, punctuation removed) contains one of at least `MIN_FRAGMENT_WORDS` words is dropped. This
removes, among others, the ASDiv problems whose body is a SVAMP test body (README, Data and
tasks). `tests/test_pretrain_corpus.py` checks the result with an independent search.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import glob
import os
import re
from typing import Iterable, Sequence

from absl import logging

from t5x_sbs.data import sources
from t5x_sbs.teacher import aligned_outputs, eitnlp
from t5x_sbs.teacher.parsing import parse_teacher_output

MIN_FRAGMENT_WORDS = 4  # shorter eval texts ("A man sleeps.") are phrases, not examples
EVAL_SPLITS = ("validation", "test")
EVAL_DATASETS = ("cqa", "svamp", "anli1", "esnli", "gsm8k", "asdiv")  # cose = cqa's questions


@dataclasses.dataclass(frozen=True)
class Document:
    id: str
    source: str  # e.g. 'cqa/input', 'svamp/palm', 'gsm8k/eitnlp:gemini-level2'
    text: str


def normalise_words(text: str) -> tuple[str, ...]:
    """Lower-cased words without punctuation, every number as `#`: SVAMP varies the numbers of
    ASDiv problems, so a variant with other numbers counts as the same text."""
    return tuple(re.sub(r"[0-9]+(?:[.,][0-9]+)*", " # ", re.sub(r"[^a-z0-9.,]+", " ", text.lower()))
                 .replace(".", " ").replace(",", " ").split())


# ----------------------------------------------------------------------------- documents
def _inputs(dataset: str, data_dir: str) -> list[Document]:
    docs = []
    for e in sources.split_examples(dataset, data_dir, "train"):
        docs.append(Document(f"{dataset}:{e.id}", f"{dataset}/input", e.text))
        if dataset == "gsm8k":
            solution = re.sub(r"<<[^>]*>>", "", e.input["solution"])
            docs.append(Document(f"{dataset}:{e.id}:solution", "gsm8k/solution", solution))
    return docs


def _cose(data_dir: str) -> list[Document]:
    return [Document(f"cose:{e.id}", "cose/explanation", e.input["cose_explanation"])
            for e in sources.split_examples("cose", data_dir, "train")]


def _palm(dataset: str, data_dir: str, train_ids: set[str]) -> list[Document]:
    return [Document(f"{dataset}:{o.example.id}:palm", f"{dataset}/palm", o.parsed.rationale)
            for o in aligned_outputs.load_palm_teacher(dataset, data_dir, "train")
            if o.example.id in train_ids and o.parsed.ok and (o.parsed.rationale or "").strip()]


def _anli_palm(data_dir: str) -> list[Document]:
    """ANLI-R1 train rationales: the stored PaLM outputs, parsed; their inputs are not here."""
    docs = []
    for i, raw in enumerate(sources.load_palm_outputs("anli1", data_dir, "train")):
        parsed = parse_teacher_output("anli1", raw)
        if parsed.ok and (parsed.rationale or "").strip():
            docs.append(Document(f"anli1:train-{i}:palm", "anli1/palm", parsed.rationale))
    return docs


def _eitnlp(dataset: str, data_dir: str, train_ids: set[str]) -> list[Document]:
    docs = []
    for path in sorted(glob.glob(os.path.join(data_dir, dataset, "eitnlp_cot", "*.json"))):
        records, _ = eitnlp.eitnlp_records(path, dataset, data_dir, "train")
        docs += [Document(f"{dataset}:{r.id}:{r.teacher}", f"{dataset}/{r.teacher}", r.rationale)
                 for r in records if r.id in train_ids and r.status == "ok" and (r.rationale or "").strip()]
    return docs


def candidate_documents(data_dir: str) -> list[Document]:
    """Every document before decontamination, in a fixed order."""
    train_ids = {ds: {e.id for e in sources.split_examples(ds, data_dir, "train")}
                 for ds in ("cqa", "svamp", "gsm8k")}
    docs: list[Document] = []
    for dataset in ("cqa", "svamp", "gsm8k", "asdiv"):
        docs += _inputs(dataset, data_dir)
    docs += _cose(data_dir)
    for dataset in ("cqa", "svamp"):
        docs += _palm(dataset, data_dir, train_ids[dataset])
    docs += _anli_palm(data_dir)
    for dataset in ("cqa", "svamp", "gsm8k"):
        docs += _eitnlp(dataset, data_dir, train_ids[dataset])
    return docs


# ----------------------------------------------------------------------------- decontamination
def _fragments(example) -> list[str]:
    if "premise" in example.input:
        return [example.input["premise"], example.input["hypothesis"]]
    if "question" in example.input and example.dataset in ("cqa", "cose", "gsm8k"):
        return [example.input["question"]]
    if "Body" in example.input:  # ASDiv
        return [example.text, example.input["Body"]]
    body, _, _ = example.text.rpartition("\n")  # SVAMP: Body\nQuestion
    return [example.text] + ([body] if body else [])


def eval_fragments(data_dir: str, datasets: Sequence[str] = EVAL_DATASETS) -> dict[tuple[str, ...], str]:
    """{normalised words: 'dataset/split'} for every validation/test question, premise,
    hypothesis and problem body (ASDiv's only eval split is its validation carve-out)."""
    fragments: dict[tuple[str, ...], str] = {}
    for dataset in datasets:
        for split in EVAL_SPLITS:
            if dataset == "asdiv" and split == "test":
                continue
            # no validation file (cqa, svamp, gsm8k, asdiv): the 10% carve-out of train
            examples = sources.load_examples(dataset, data_dir, split)
            for e in examples:
                for text in _fragments(e):
                    words = normalise_words(text)
                    if len(words) >= MIN_FRAGMENT_WORDS:
                        fragments.setdefault(words, f"{dataset}/{split}")
    return fragments


def contaminating_fragment(words: Sequence[str], index: dict, fragments: dict) -> tuple[str, ...] | None:
    """The first eval fragment that occurs (as a run of words) in `words`, else None.
    `index` maps each fragment's first MIN_FRAGMENT_WORDS words to the fragments starting so."""
    k = MIN_FRAGMENT_WORDS
    for i in range(len(words) - k + 1):
        for fragment in index.get(tuple(words[i:i + k]), ()):
            if tuple(words[i:i + len(fragment)]) == fragment:
                return fragment
    return None


def decontaminate(docs: Iterable[Document], fragments: dict[tuple[str, ...], str]
                  ) -> tuple[list[Document], list[tuple[Document, str]]]:
    """(kept, [(dropped document, the 'dataset/split' of the fragment it contains)])."""
    index: dict[tuple[str, ...], list[tuple[str, ...]]] = collections.defaultdict(list)
    for fragment in fragments:
        index[fragment[:MIN_FRAGMENT_WORDS]].append(fragment)
    kept, dropped = [], []
    for doc in docs:
        hit = contaminating_fragment(normalise_words(doc.text), index, fragments)
        if hit is None:
            kept.append(doc)
        else:
            dropped.append((doc, fragments[hit]))
    return kept, dropped


@functools.lru_cache(maxsize=2)
def shared_corpus(data_dir: str) -> tuple[Document, ...]:
    """The decontaminated corpus of `data_dir` (built once per process, ~10 s)."""
    kept, dropped = decontaminate(candidate_documents(data_dir), eval_fragments(data_dir))
    by_source = collections.Counter(d.source.split("/")[0] for d, _ in dropped)
    logging.info("pretraining corpus: %d documents (%d dropped for containing validation/test text: %s)",
                 len(kept), len(dropped), dict(by_source))
    return tuple(kept)

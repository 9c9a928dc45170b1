"""A small SentencePiece vocabulary from a dataset's texts (`t5x-sbs vocab`).

For from-scratch runs and tests (real use loads the pretrained checkpoint's `spiece.model`).
`--dataset pretrain` trains on the span-corruption pretraining corpus (`pretrain_corpus`; with
`--text_files`, on your files instead); `--extra_ids 100` reports the embedding size the
sentinels need (seqio appends extra ids to the model's pieces, they are not in the file).
The model follows T5's conventions, so `seqio.SentencePieceVocabulary` reads it as is:
pad=0, eos=1, unk=2, no bos.
"""
from __future__ import annotations

import collections
import dataclasses
import io
import os
from typing import Iterable

import sentencepiece as spm

from t5x_sbs.data import pretrain_corpus, sources
from t5x_sbs.teacher import aligned_outputs


def train_sentencepiece(texts: Iterable[str], model_path: str, vocab_size: int = 256,
                        model_type: str = "unigram") -> str:
    """Trains on `texts` and writes `model_path` (a `.model` file); returns its path.

    Keep `unigram` for anything exported to Hugging Face: its T5 tokenizers read every
    SentencePiece model as unigram, so a `bpe` model tokenizes differently there (the export
    refuses one). `hard_vocab_limit=False`: on a narrow corpus the trainer may stop short of
    `vocab_size` (the built-in arithmetic task has 72 distinct words and ends at ~103-125
    pieces); callers print the size they got."""
    sentences = [t for t in texts if t and t.strip()]
    if not sentences:
        raise ValueError("no text to train a vocabulary on")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=model, vocab_size=vocab_size,
        model_type=model_type, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        character_coverage=1.0, hard_vocab_limit=False, byte_fallback=False,
        minloglevel=2, num_threads=1,
    )
    os.makedirs(os.path.dirname(os.path.abspath(model_path)), exist_ok=True)
    with open(model_path, "wb") as f:
        f.write(model.getvalue())
    return model_path


@dataclasses.dataclass
class VocabTexts:
    """The texts a vocabulary is trained on, and the count of those left out, by reason."""

    texts: list[str] = dataclasses.field(default_factory=list)
    skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    notes: list[str] = dataclasses.field(default_factory=list)  # whole sources left out, and why

    def add(self, text: str | None, reason_if_blank: str) -> None:
        if text and text.strip():
            self.texts.append(text)
        else:
            self.skipped[reason_if_blank] += 1

    def summary(self) -> str:
        if not self.skipped:
            return "none skipped"
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items()))
        return f"skipped {sum(self.skipped.values())} texts: {reasons}"


def collect_dataset_texts(dataset: str, data_dir: str, splits: Iterable[str] = ("train",),
                          with_teacher: bool = True) -> VocabTexts:
    """Inputs, gold labels and (when stored outputs exist) teacher rationales of a dataset, with
    every blank text counted by reason and every split without teacher outputs noted."""
    collected = VocabTexts()
    for split in splits:
        for example in sources.load_examples(dataset, data_dir, split):
            for part in example.text.split(sources.NLI_SEPARATOR):
                collected.add(part, "empty input texts")
            collected.add(example.gold, "empty gold labels")
        if with_teacher:
            try:
                outputs = aligned_outputs.load_palm_teacher(dataset, data_dir, split)
            except sources.NoPalmOutputs as e:  # a dataset without them; a broken file still fails
                collected.notes.append(f"no teacher rationales for {split}: {e}")
                continue
            for output in outputs:
                collected.add(output.parsed.rationale, f"teacher outputs without a rationale ({output.parsed.status})")
    # The prefixes are part of every input.
    collected.texts.extend(["predict: explain: [label] [rationale]"] * 10)
    return collected


def dataset_texts(dataset: str, data_dir: str, splits: Iterable[str] = ("train",),
                  with_teacher: bool = True) -> list[str]:
    """The non-blank texts of `collect_dataset_texts`."""
    return collect_dataset_texts(dataset, data_dir, splits, with_teacher).texts


def pretrain_texts(data_dir: str) -> list[str]:
    """The pretraining corpus' documents: ../shared/data's (decontaminated)."""
    return [d.text for d in pretrain_corpus.shared_corpus(data_dir)]


def document_texts(documents: Iterable[str]) -> VocabTexts:
    """Pretraining documents as vocabulary texts, blank ones counted."""
    collected = VocabTexts()
    for document in documents:
        collected.add(document, "empty documents")
    return collected


def padded_size(pieces: int, extra_ids: int, multiple: int = 128) -> int:
    """Embedding rows for the pieces plus seqio's sentinels, rounded up (T5: 32128)."""
    return -(-(pieces + extra_ids) // multiple) * multiple

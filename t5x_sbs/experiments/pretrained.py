"""The main job's pretrained student: span-corruption pretraining once, reused by later runs.

Corpus: the offline pretraining corpus of ../shared/data (`pretrain_corpus`: train-split text
only, no validation/test text of any dataset) when present, plus the task's own *train* inputs
(unlabeled; no labels, no rationales), one document per line in `corpus.txt`. Its vocabulary
(unigram SentencePiece, plus the prefixes) and the pretrained MODEL_DIR live in
`PRETRAIN_DIR/<key>/`, `key` a hash of everything the result depends on (corpus text, model gin
files, steps, batch, lengths, vocabulary size, seed), so a later run with the same settings
reuses it and any change pretrains anew. The model's embedding has pieces + 100 sentinel rows
(padded to 128); the finetuning runs bind the same size, so the checkpoint loads as is.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import string

import sentencepiece as spm

from t5x_sbs import checkpoints
from t5x_sbs.data import pretrain_corpus
from t5x_sbs.data.vocab import train_sentencepiece
from t5x_sbs.experiments.sweep import _gin_sha256
from t5x_sbs.tasks import config as task_config
from t5x_sbs.trainer import configs, train_loop

EXTRA_IDS = 100
# Characters every pretrained vocabulary holds as pieces, whether or not the corpus has them: a
# downstream label such as "7" must never encode to the unknown piece (the task's inputs may
# happen to hold only the digits 1-6). Changing it changes every settings key.
REQUIRED_CHARACTERS = string.digits + string.ascii_letters + string.punctuation


@dataclasses.dataclass(frozen=True)
class PretrainSpec:
    root: str                  # e.g. runs/pretrained
    model_gin: str
    steps: int = 600
    batch_size: int = 32
    inputs_length: int = 128   # span corruption: 141-token segments -> 128 inputs / 32 targets
    targets_length: int = 32
    vocab_size: int = 2000
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class Pretrained:
    model_dir: str
    spm_path: str
    vocab_rows: int            # T5Config.vocab_size of the pretrained and the finetuned students
    reused: bool
    documents: int


def corpus_texts(task_texts: list[str], data_dir: str | None) -> tuple[list[str], str]:
    """(documents, where they came from): the shared corpus when `data_dir` has one, and the task's."""
    docs, where = [" ".join(t.split()) for t in task_texts if t.strip()], "the task's train inputs"
    if data_dir and os.path.isfile(os.path.join(data_dir, "MANIFEST.md")):
        shared = [" ".join(d.text.split()) for d in pretrain_corpus.shared_corpus(data_dir)]
        docs, where = shared + docs, f"{len(shared)} documents of {data_dir}'s train splits + " + where
    return [d for d in docs if d], where


def key(spec: PretrainSpec, corpus_sha: str) -> str:
    settings = {**dataclasses.asdict(spec), "root": None, "model_gin": _gin_sha256(spec.model_gin),
                "run_gin": _gin_sha256(os.path.join("gin", "runs", "pretrain.gin")), "corpus": corpus_sha,
                "required_characters": REQUIRED_CHARACTERS}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def vocab_rows(spm_path: str) -> int:
    pieces = spm.SentencePieceProcessor(model_file=spm_path).get_piece_size()
    return -(-(pieces + EXTRA_IDS) // 128) * 128


def train_vocabulary(documents: list[str], spm_path: str, vocab_size: int) -> str:
    """Unigram SentencePiece on the corpus, the task prefixes and REQUIRED_CHARACTERS."""
    prefixes = " ".join(task_config.prefixes().values())
    coverage = " ".join(REQUIRED_CHARACTERS)
    return train_sentencepiece(documents + [prefixes] * 20 + [coverage] * 5, spm_path, vocab_size)


def pretrain(spec: PretrainSpec, documents: list[str], say=print) -> Pretrained:
    """Pretrains (or resumes, or reuses) the student; returns where it is."""
    text = "".join(d.replace("\n", " ") + "\n" for d in documents)
    home = os.path.join(spec.root, key(spec, hashlib.sha256(text.encode()).hexdigest()))
    model_dir, spm_path, corpus = os.path.join(home, "model"), os.path.join(home, "spiece.model"), os.path.join(home, "corpus.txt")
    done = spec.steps in checkpoints.complete_steps(model_dir) if os.path.isdir(model_dir) else False
    if not done:
        os.makedirs(home, exist_ok=True)
        with open(corpus, "w", encoding="utf-8") as f:
            f.write(text)
        if not os.path.isfile(spm_path):
            train_vocabulary(documents, spm_path, spec.vocab_size)
        say(f"      pretraining the student: {spec.steps} steps of span corruption on {len(documents)} documents -> {model_dir}")
        with configs.gin_scope():
            train_loop.train(pretrain_configs(spec, model_dir, spm_path, corpus))
    return Pretrained(model_dir, spm_path, vocab_rows(spm_path), reused=done, documents=len(documents))


def pretrain_configs(spec: PretrainSpec, model_dir: str, spm_path: str, corpus: str) -> configs.TrainConfigs:
    """The pretraining run's typed configs: gin/runs/pretrain.gin (with its macros and the corpus
    and vocabulary the tasks read, the data edge) parsed once, then this spec's own settings."""
    lengths = {"inputs": spec.inputs_length, "targets": spec.targets_length}
    bindings = [f"MODEL_DIR = {json.dumps(model_dir)}", f"TRAIN_STEPS = {spec.steps}", f"BATCH_SIZE = {spec.batch_size}",
                "MIXTURE_OR_TASK_NAME = 'text_span_corruption'", f"SPM_PATH = {json.dumps(spm_path)}",
                f"TASK_FEATURE_LENGTHS = {json.dumps(lengths)}", f"EVAL_EVERY = {max(1, spec.steps // 2)}",
                f"tasks.pretrain.text_files.paths = [{json.dumps(corpus)}]"]
    parsed = configs.configs_from_gin([spec.model_gin, "gin/runs/pretrain.gin"], bindings)
    return dataclasses.replace(
        parsed.with_run(seed=spec.seed, eval_batches=2, keep_checkpoints=1, log_every=50),
        model=dataclasses.replace(parsed.model, vocab_size=vocab_rows(spm_path)))

"""Gin-configurable settings the tasks read lazily, when a dataset is built (never at import).

Gin bindings (macros as in T5X):
    DATA_DIR = '../shared/data'
    tasks.config.data_dir.path = %DATA_DIR
    tasks.config.vocabulary_path.path = %SPM_PATH          # SentencePiece .model
    tasks.config.prefixes.style = 'paper'                  # '[label] ' / '[rationale] '
    tasks.config.data_options.fraction = 0.25              # nested, by example-id hash
    tasks.config.data_options.rationale_coverage = 0.5     # rationales for a hashed subset
    tasks.config.teacher_files.files = {'svamp': 'stores/svamp.jsonl'}
    tasks.config.teacher_coverage.mode = 'annotated'       # a store covering part of train (--limit)
    tasks.config.teacher_reading.samples = 'vote'          # first | vote | all (several samples)
    tasks.config.teacher_reading.prompt_hash = '3f2a'      # a store holding several prompts/teachers
    tasks.config.tfds_data_dirs.dirs = {'esnli': '~/tensorflow_datasets'}  # read from prepared TFDS
    tasks.config.mixture_rates.mode = 'examples'           # or 'equal' (default)
    tasks.config.mixture_rates.rates = {'asdiv_label_llm': 0.5}
    tasks.config.cache_dirs.dirs = ['/data/seqio_cache']   # `t5x-sbs cache-tasks` output, read with
                                                           # RunConfig.use_cached = True (tasks/cache.py)
Without gin: env T5X_SBS_DATA_DIR / T5X_SBS_SPM_PATH, else ../shared/data beside the repo.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib

import gin
import seqio

from t5x_sbs.names import PREFIXES
from t5x_sbs.teacher.store_reading import TeacherReading

_DEFAULT_DATA_DIR = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"


@gin.configurable(module="tasks.config")
def data_dir(path: str | None = None) -> str:
    return os.fspath(path or os.environ.get("T5X_SBS_DATA_DIR") or _DEFAULT_DATA_DIR)


# The SentencePiece model the trainer resolved for the running job (SPM_PATH, the run's kept
# spiece.model, the initial checkpoint's, or one trained now): handed over explicitly with
# `use_vocabulary`, instead of binding gin at run time.
_run_vocabulary: str | None = None


def use_vocabulary(path: str | None) -> None:
    """Makes `path` the vocabulary of every task when SPM_PATH is unbound (None forgets it)."""
    global _run_vocabulary
    _run_vocabulary = os.fspath(path) if path else None


@gin.configurable(module="tasks.config")
def vocabulary_path(path: str | None = None) -> str:
    path = path or _run_vocabulary or os.environ.get("T5X_SBS_SPM_PATH")
    if not path:
        raise ValueError("no SentencePiece model: bind tasks.config.vocabulary_path.path (gin SPM_PATH) "
                         "or set T5X_SBS_SPM_PATH; `t5x-sbs vocab` trains a small one")
    return os.fspath(path)


@gin.configurable(module="tasks.config")
def vocabulary_extra_ids(extra_ids: int = 0) -> int:
    return extra_ids


@gin.configurable(module="tasks.config")
def prefixes(style: str = "code", label: str | None = None, rationale: str | None = None) -> dict[str, str]:
    if style not in PREFIXES:
        raise ValueError(f"prefix style {style!r} not in {sorted(PREFIXES)}")
    chosen = dict(PREFIXES[style])
    chosen.update({k: v for k, v in (("label", label), ("rationale", rationale)) if v is not None})
    return chosen


@dataclasses.dataclass(frozen=True)
class DataOptions:
    fraction: float = 1.0            # of the training examples (nested subsets by id hash)
    rationale_coverage: float = 1.0  # of the (selected) training examples that get a rationale row


@gin.configurable(module="tasks.config")
def data_options(fraction: float = 1.0, rationale_coverage: float = 1.0) -> DataOptions:
    for name, value in (("fraction", fraction), ("rationale_coverage", rationale_coverage)):
        if not 0.0 < value <= 1.0:
            raise ValueError(f"{name} must be in (0, 1], got {value}")
    return DataOptions(fraction, rationale_coverage)


@gin.configurable(module="tasks.config")
def teacher_files(files: dict[str, str] | None = None) -> dict[str, str]:
    """dataset -> TeacherRecord store; datasets not listed replay the paper's PaLM outputs."""
    return dict(files or {})


TEACHER_COVERAGE_MODES = ("all", "annotated")


@gin.configurable(module="tasks.config")
def teacher_coverage(mode: str = "all") -> str:
    """What the tasks do with examples that have no record in their teacher store.

    'all' (default): every example needs one; a missing record is an error naming the store (a
    store that does not match its inputs). 'annotated': the teacher was asked only part of the
    data (`t5x-sbs rationales --limit N`): on train every task, the gold ones too, uses only the
    annotated examples, so all methods learn from the same examples; on validation/test the
    labels stay gold on every example and rationale rows exist for the annotated ones only."""
    if mode not in TEACHER_COVERAGE_MODES:
        raise ValueError(f"tasks.config.teacher_coverage.mode: {mode!r} is not one of {TEACHER_COVERAGE_MODES}")
    return mode


@gin.configurable(module="tasks.config")
def teacher_reading(teacher: str | None = None, prompt_hash: str | None = None, samples: str = "first"):
    """How the tasks read a teacher store (`t5x_sbs.teacher.store_reading`): which (teacher, prompt
    hash) group, needed when a store holds several (it is refused otherwise, listing them), and
    what several samples per example give: 'first' (the lowest sample), 'vote' (the majority
    label, the agreeing rationales as extra rationale rows) or 'all' (every ok sample)."""
    try:
        return TeacherReading(teacher=teacher, prompt_hash=prompt_hash, samples=samples)
    except ValueError as e:
        raise ValueError(f"tasks.config.teacher_reading: {e}") from None


@gin.configurable(module="tasks.config")
def tfds_data_dirs(dirs: dict[str, str] | None = None) -> dict[str, str]:
    """dataset -> TFDS data_dir: read that dataset (esnli, anli1) from a prepared TFDS dataset
    there instead of the paper's JSON files (`t5x_sbs.data.tfds_source`)."""
    return {k: os.path.expanduser(os.fspath(v)) for k, v in (dirs or {}).items()}


@gin.configurable(module="tasks.config")
def cache_dirs(dirs: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Where `t5x-sbs cache-tasks` wrote the tasks' SeqIO cache (its --output_cache_dir; gs:// works),
    searched when a run reads the cache (RunConfig.use_cached); else env T5X_SBS_CACHE_DIRS
    (os.pathsep-separated)."""
    chosen = list(dirs) or [d for d in os.environ.get("T5X_SBS_CACHE_DIRS", "").split(os.pathsep) if d]
    return [os.path.expanduser(os.fspath(d)) for d in chosen]


MIXTURE_RATE_MODES = ("equal", "examples")


@dataclasses.dataclass(frozen=True)
class MixtureRates:
    mode: str = "equal"                 # 'equal': every task rate 1; 'examples': its train rows
    rates: dict = dataclasses.field(default_factory=dict)  # task name -> rate, overrides the mode


@gin.configurable(module="tasks.config")
def mixture_rates(mode: str = "equal", rates: dict[str, float] | None = None) -> MixtureRates:
    """How mixtures sample their tasks (read when a mixture's dataset is built).

    'equal' (default) is the paper's step-by-step batch: one label and one rationale row per
    example. 'examples' weighs a task by its number of train rows, as concatenating the tasks
    would (differs with partial rationale coverage or an extra data set such as ASDiv)."""
    if mode not in MIXTURE_RATE_MODES:
        raise ValueError(f"mixture rate mode {mode!r} not in {MIXTURE_RATE_MODES}")
    for name, rate in (rates or {}).items():
        if not isinstance(rate, (int, float)) or rate < 0:
            raise ValueError(f"mixture rate for {name!r} must be a number >= 0, got {rate!r}")
    return MixtureRates(mode, dict(rates or {}))


class ConfiguredVocabulary(seqio.Vocabulary):
    """A SentencePiece vocabulary whose model path is read from gin on first use, so tasks can
    be registered at import time before the configuration is parsed."""

    def __init__(self):
        super().__init__(extra_ids=0)
        self._resolved: seqio.SentencePieceVocabulary | None = None

    @property
    def resolved(self) -> seqio.SentencePieceVocabulary:
        key = (vocabulary_path(), vocabulary_extra_ids())
        if self._resolved is None or self._key != key:
            self._resolved, self._key = seqio.SentencePieceVocabulary(key[0], extra_ids=key[1]), key
        return self._resolved

    @property
    def eos_id(self):
        return self.resolved.eos_id

    @property
    def unk_id(self):
        return self.resolved.unk_id

    @property
    def vocab_size(self):
        return self.resolved.vocab_size

    @property
    def _base_vocab_size(self):
        return self.resolved.vocab_size

    @property
    def extra_ids(self):
        return self.resolved.extra_ids

    def encode(self, s):
        return self.resolved.encode(s)

    def decode(self, ids):
        return self.resolved.decode(ids)

    def encode_tf(self, s):
        return self.resolved.encode_tf(s)

    def decode_tf(self, ids):
        return self.resolved.decode_tf(ids)

    def _encode(self, s):
        return self.resolved.encode(s)

    def _decode(self, ids):
        return self.resolved.decode(ids)

    def _encode_tf(self, s):
        return self.resolved.encode_tf(s)

    def _decode_tf(self, ids):
        return self.resolved.decode_tf(ids)

    def __eq__(self, other):
        return isinstance(other, ConfiguredVocabulary)

    def __hash__(self):
        return hash(ConfiguredVocabulary)


VOCABULARY = ConfiguredVocabulary()

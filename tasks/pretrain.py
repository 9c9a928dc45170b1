"""Span-corruption pretraining tasks (T5's objective, `t5x_sbs.data.span_corruption`).

    shared_span_corruption  the offline corpus of ../shared/data: train-split inputs, PaLM and
                            third-party train rationales, CoS-E, GSM8K solutions, ASDiv, with no
                            validation/test text (`t5x_sbs.data.pretrain_corpus`)
    text_span_corruption    your own text: plain-text files (one document per line) and JSONL
                            files (one document per line in `jsonl_field`), one gin setting:
                                tasks.pretrain.text_files.paths = ['corpus/*.txt', 'more.jsonl']
    c4_span_corruption      TFDS `c4/en` prepared in a data_dir (nothing is downloaded here):
                                tasks.pretrain.c4.data_dir = '~/tensorflow_datasets'

Rows are {inputs, targets} without a `task` feature, so the trainer counts them as label rows
and the loss is the mean cross-entropy over target tokens; they are packed like every other
task. A `validation` split (`options.validation_fraction` of the documents, by a hash of the
document) gives the teacher-forced validation loss that keeps best/. The vocabulary needs
sentinels: `tasks.config.vocabulary_extra_ids.extra_ids = 100` (gin/runs/pretrain.gin).
"""
from __future__ import annotations

import dataclasses
import functools
import glob
import os
from typing import Sequence

import gin
import seqio
import tensorflow as tf

from t5x_sbs.data import pretrain_corpus, sources
from t5x_sbs.data import span_corruption as span_lib
from t5x_sbs.tasks import config

SHARED_TASK, TEXT_TASK, C4_TASK = "shared_span_corruption", "text_span_corruption", "c4_span_corruption"
SPLITS = ("train", "validation")
_VALIDATION_SALT = "pretrain-validation"


@dataclasses.dataclass(frozen=True)
class PretrainOptions:
    validation_fraction: float = 0.01
    noise_density: float = span_lib.NOISE_DENSITY
    mean_noise_span_length: float = span_lib.MEAN_NOISE_SPAN_LENGTH
    seed: int = 0  # salts the (content-hashed) corruption seeds


@gin.configurable(module="tasks.pretrain")
def options(validation_fraction: float = 0.01, noise_density: float = span_lib.NOISE_DENSITY,
            mean_noise_span_length: float = span_lib.MEAN_NOISE_SPAN_LENGTH, seed: int = 0) -> PretrainOptions:
    if not 0.0 <= validation_fraction < 1.0 or not 0.0 < noise_density < 1.0:
        raise ValueError(f"tasks.pretrain.options: validation_fraction {validation_fraction} must be in [0, 1), "
                         f"noise_density {noise_density} in (0, 1)")
    return PretrainOptions(validation_fraction, noise_density, mean_noise_span_length, seed)


@gin.configurable(module="tasks.pretrain")
def text_files(paths: Sequence[str] = (), jsonl_field: str = "text") -> tuple[list[str], str]:
    """(files matched by `paths`, globs allowed; the JSONL text field). `.jsonl` files are JSON
    lines, anything else plain text with one document per line."""
    files = sorted({f for p in paths for f in glob.glob(os.path.expanduser(os.fspath(p)))})
    if not files:
        raise ValueError(f"tasks.pretrain.text_files.paths = {list(paths)!r} matches no file: bind it to "
                         "your text files for the text_span_corruption task")
    return files, jsonl_field


@gin.configurable(module="tasks.pretrain")
def c4(data_dir: str | None = None, name: str = "c4/en:3.1.0") -> tuple[str, str]:
    if not data_dir:
        raise ValueError("c4_span_corruption reads a prepared TFDS c4 dataset: bind tasks.pretrain.c4.data_dir "
                         "(prepare it with tfds.builder('c4/en').download_and_prepare() where there is internet)")
    return os.path.expanduser(os.fspath(data_dir)), name


def in_validation(key: str) -> bool:
    return sources.id_fraction(key, salt=_VALIDATION_SALT) < options().validation_fraction


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"pretraining tasks have splits {SPLITS}, not {split!r}")


# ----------------------------------------------------------------------------- sources
def _shared_dataset(split: str, shuffle_files: bool, seed: int | None = None) -> tf.data.Dataset:
    del shuffle_files, seed  # in memory; the Task shuffles rows
    _check_split(split)
    docs = pretrain_corpus.shared_corpus(config.data_dir())
    texts = [d.text for d in docs if in_validation(d.id) == (split == "validation")]
    return tf.data.Dataset.from_tensor_slices({"text": tf.constant(texts, tf.string)})


def _text_dataset(split: str, shuffle_files: bool, seed: int | None = None) -> tf.data.Dataset:
    del shuffle_files, seed
    _check_split(split)
    files, field = text_files()

    def documents():
        for path in files:
            for _, text in sources.read_text_documents(path, field):
                if in_validation(text) == (split == "validation"):
                    yield {"text": text}

    return tf.data.Dataset.from_generator(documents, output_signature={"text": tf.TensorSpec((), tf.string)})


def _c4_dataset(split: str, shuffle_files: bool, seed: int | None = None) -> tf.data.Dataset:
    import tensorflow_datasets as tfds

    _check_split(split)
    data_dir, name = c4()
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # noqa: BLE001  tfds raises several types for a missing dataset
        raise ValueError(f"TFDS {name} not found in {data_dir}: {e}") from None
    if not builder.is_prepared():
        raise ValueError(f"TFDS {name} is not prepared in {data_dir} (nothing is downloaded here)")
    ds = builder.as_dataset(split=split, shuffle_files=shuffle_files,
                            read_config=tfds.ReadConfig(shuffle_seed=seed))
    return ds.map(lambda ex: {"text": ex["text"]}, num_parallel_calls=tf.data.AUTOTUNE)


# ----------------------------------------------------------------------------- tasks
def _span_corruption(ds: tf.data.Dataset, sequence_length, output_features) -> tf.data.Dataset:
    o = options()
    return span_lib.span_corruption(ds, sequence_length, output_features, o.noise_density,
                                    o.mean_noise_span_length, o.seed)


def output_features() -> dict[str, seqio.Feature]:
    return {"inputs": seqio.Feature(config.VOCABULARY, add_eos=True),
            "targets": seqio.Feature(config.VOCABULARY, add_eos=True)}


def _add_task(name: str, dataset_fn) -> str:
    if name in seqio.TaskRegistry.names():
        seqio.TaskRegistry.remove(name)
    seqio.TaskRegistry.add(
        name, source=seqio.FunctionDataSource(dataset_fn, splits=SPLITS), output_features=output_features(),
        # cached (t5x-sbs cache-tasks): the tokenized documents; the corruption, seeded per
        # document and sequence length, runs after the cache
        preprocessors=[_rekey_text, seqio.preprocessors.tokenize, seqio.CacheDatasetPlaceholder(), _span_corruption,
                       seqio.preprocessors.append_eos_after_trim],
        metric_fns=[])
    return name


def _rekey_text(ds: tf.data.Dataset) -> tf.data.Dataset:
    return seqio.preprocessors.rekey(ds, key_map={"targets": "text"})


@functools.cache
def register() -> list[str]:
    """Registers the three span-corruption tasks once; returns their names."""
    return [_add_task(SHARED_TASK, _shared_dataset), _add_task(TEXT_TASK, _text_dataset),
            _add_task(C4_TASK, _c4_dataset)]

"""One registration path for every dataset: SeqIO tasks and mixtures with our naming scheme.

Per dataset `ds` (label source `src` in gold | llm):
    tasks     {ds}_label_gold     prefix+input -> gold label             (task id 1)
              {ds}_label_llm      prefix+input -> teacher label (train; gold on validation/test)
              {ds}_rationale_llm  prefix+input -> teacher rationale      (task id 2)
              {ds}_sbs_{src}_paired  adjacent (label row, rationale row) pairs of one example,
                                  shuffled per example, for the trainer's `paired` loss mode
    mixtures  {ds}_standard_gold = [label_gold]     {ds}_standard_llm = [label_llm]
              {ds}_sbs_gold = [label_gold, rationale_llm]   {ds}_sbs_llm = [label_llm, rationale_llm]
Everything is read lazily when a split is built: the data dir, prefixes, vocabulary, fraction,
rationale coverage, teacher files (and how much of the data they must cover), TFDS sources and
mixture rates come from `tasks.config` (gin).
Extra unlabeled data: `register_augmented_mixtures(base, extra)`, e.g. `svamp_asdiv_sbs_llm`.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Sequence

import numpy as np
import seqio
import tensorflow as tf
from absl import logging

from t5x_sbs import metrics
from t5x_sbs.data import sources
from t5x_sbs.names import LABEL_TASK_ID, RATIONALE_TASK_ID, mixture_name
from t5x_sbs.records import Example
from t5x_sbs.tasks import config
from t5x_sbs.teacher import aligned_outputs, parsing, store_reading

SPLITS = ("train", "validation", "test")
METRICS = {"accuracy": metrics.accuracy, "equation": metrics.equation_accuracy, "gsm8k": metrics.gsm8k_accuracy}
ROW_KEYS = ("id", "inputs", "targets", "task")
PAIR_KEYS = ("id", "label_inputs", "label_targets", "rationale_inputs", "rationale_targets")


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """How to read one dataset: examples per split and the teacher's answers for them."""

    name: str
    # (data_dir, split) -> examples of the task view (train excludes a validation carve-out).
    load: Callable[[str, str], list[Example]]
    # (data_dir, split, examples) -> a TeacherOutput for each example (raises if one is missing).
    teacher: Callable[[str, str, list[Example]], list[parsing.TeacherOutput]]
    metric: str = "accuracy"


def output_features() -> dict[str, seqio.Feature]:
    """`task` (1 label, 2 rationale, one int per row) is an output feature so that mixtures keep
    it: `Mixture.get_dataset` drops every feature that is not one (seqio.get_dataset has no
    passthrough). The feature converter spreads it over the target tokens."""
    return {"inputs": seqio.Feature(config.VOCABULARY, add_eos=True),
            "targets": seqio.Feature(config.VOCABULARY, add_eos=True),
            "task": seqio.Feature(seqio.PassThroughVocabulary(size=0), add_eos=False, dtype=tf.int32, rank=0)}


def strip_output(output: str, example=None, is_target: bool = False) -> str:
    """postprocess_fn: decoded text without surrounding whitespace."""
    del example, is_target
    return output.strip() if isinstance(output, str) else output


# --- python rows ---------------------------------------------------------------------------

def _selected(spec: DatasetSpec, split: str) -> tuple[list[Example], dict[str, parsing.TeacherOutput] | None]:
    """The split's examples after the data fraction (and teacher coverage), and the teacher
    outputs when selecting them needed the store (else None: callers read it if they need it)."""
    examples, teacher = spec.load(config.data_dir(), split), None
    annotated_only = split == "train" and config.teacher_coverage() == "annotated"
    if split == "train":
        fraction = config.data_options().fraction
        examples = [e for e in examples if sources.id_fraction(e.id) < fraction]
    if annotated_only and examples:  # every method learns from the examples the teacher was asked
        selected, teacher = len(examples), _teacher(spec, split, examples)
        examples = [e for e in examples if e.id in teacher]
        logging.info("%s train: %d of %d examples have a teacher record (teacher_coverage 'annotated')",
                     spec.name, len(examples), selected)
    if not examples:
        why = " with a teacher record (tasks.config.teacher_coverage.mode = 'annotated')" if annotated_only else ""
        raise ValueError(f"{spec.name} {split}: no examples selected{why}")
    return examples, teacher


def _teacher(spec: DatasetSpec, split: str, examples: list[Example]) -> dict[str, parsing.TeacherOutput]:
    return {o.example.id: o for o in spec.teacher(config.data_dir(), split, examples)}


def _gold(spec: DatasetSpec, split: str, example: Example) -> str:
    if not example.gold:
        raise sources.DataError(f"{spec.name}/{split}", None, "gold", f"example {example.id!r} has no gold label")
    return example.gold


def label_targets(spec: DatasetSpec, split: str, source: str) -> list[tuple[Example, str]]:
    """(example, label) per example; teacher labels only on train, unparseable ones skipped (logged)."""
    examples, teacher = _selected(spec, split)
    if source == "gold" or split != "train":
        return [(e, _gold(spec, split, e)) for e in examples]
    teacher = teacher if teacher is not None else _teacher(spec, split, examples)
    kept = [(e, label) for e in examples if e.id in teacher for label in teacher[e.id].labels()]
    used = sum(1 for e in examples if e.id in teacher and teacher[e.id].parsed.ok)
    if used < len(examples):
        logging.warning("%s %s: skipped %d of %d examples whose teacher output is not 'ok'",
                        spec.name, split, len(examples) - used, len(examples))
    return kept


def rationale_targets(spec: DatasetSpec, split: str) -> list[tuple[Example, str]]:
    """(example, rationale) for the covered examples with an 'ok' teacher output."""
    examples, teacher = _selected(spec, split)
    if split == "train":
        coverage = config.data_options().rationale_coverage
        examples = [e for e in examples if sources.id_fraction(e.id, salt="rationale") < coverage]
    teacher = teacher if teacher is not None else _teacher(spec, split, examples)
    kept = [(e, r) for e in examples if e.id in teacher  # not in `teacher`: never asked
            for r in teacher[e.id].rationales()]
    covered = len({e.id for e, _ in kept})
    if covered < len(examples):
        logging.warning("%s %s: %d of %d examples have no usable rationale",
                        spec.name, split, len(examples) - covered, len(examples))
    if len(kept) > covered:
        logging.info("%s %s: %d rationale rows from several samples of %d examples (teacher_reading.samples %r)",
                     spec.name, split, len(kept), covered, config.teacher_reading().samples)
    return kept


def _rows(pairs: Sequence[tuple[Example, str]], kind: str) -> dict[str, list]:
    prefix = config.prefixes()[kind]
    task_id = LABEL_TASK_ID if kind == "label" else RATIONALE_TASK_ID
    return {"id": [e.id for e, _ in pairs], "inputs": [prefix + e.text for e, _ in pairs],
            "targets": [t for _, t in pairs], "task": [task_id] * len(pairs)}


def paired_rows(spec: DatasetSpec, split: str, source: str) -> dict[str, list]:
    """One row per example that has both a label and a rationale."""
    labels: dict[str, tuple[Example, str]] = {}
    for e, t in label_targets(spec, split, source):
        labels.setdefault(e.id, (e, t))  # the main label (samples mode 'all' adds more)
    rationales = rationale_targets(spec, split)
    both = [(labels[e.id][0], labels[e.id][1], r) for e, r in rationales if e.id in labels]
    prefix = config.prefixes()
    return {"id": [e.id for e, _, _ in both],
            "label_inputs": [prefix["label"] + e.text for e, _, _ in both],
            "label_targets": [t for _, t, _ in both],
            "rationale_inputs": [prefix["rationale"] + e.text for e, _, _ in both],
            "rationale_targets": [r for _, _, r in both]}


# --- tf.data -------------------------------------------------------------------------------

def _to_dataset(columns: dict[str, list], name: str, split: str) -> tf.data.Dataset:
    if not columns["id"]:
        raise ValueError(f"{name} {split}: no rows")
    return tf.data.Dataset.from_tensor_slices(
        {k: tf.constant(v, tf.int32 if k == "task" else tf.string) for k, v in columns.items()})


def _row_source(build: Callable[[str], dict[str, list]], name: str) -> seqio.DataSource:
    def dataset_fn(split: str, shuffle_files: bool, seed: int | None = None) -> tf.data.Dataset:
        del shuffle_files, seed  # one in-memory "file"; the Task shuffles rows
        return _to_dataset(build(split), name, split)
    return seqio.FunctionDataSource(dataset_fn, splits=SPLITS)


class _SelfShufflingSource(seqio.FunctionDataSource):
    """Shuffles examples itself, so the Task must not shuffle the (adjacent) rows made from them."""

    @property
    def performs_internal_shuffling(self) -> bool:
        return True


def _pair_source(build: Callable[[str], dict[str, list]], name: str) -> seqio.DataSource:
    def dataset_fn(split: str, shuffle_files: bool, seed: int | None = None) -> tf.data.Dataset:
        columns = build(split)
        if shuffle_files:
            order = np.random.RandomState(seed or 0).permutation(len(columns["id"]))
            columns = {k: [v[i] for i in order] for k, v in columns.items()}
        return _to_dataset(columns, name, split)
    return _SelfShufflingSource(dataset_fn, splits=SPLITS)


def unpair(ds: tf.data.Dataset) -> tf.data.Dataset:
    """Each pair row -> its label row then its rationale row (kept adjacent)."""
    def two_rows(ex):
        return tf.data.Dataset.from_tensor_slices({
            "id": tf.stack([ex["id"], ex["id"]]),
            "inputs": tf.stack([ex["label_inputs"], ex["rationale_inputs"]]),
            "targets": tf.stack([ex["label_targets"], ex["rationale_targets"]]),
            "task": tf.constant([LABEL_TASK_ID, RATIONALE_TASK_ID], tf.int32)})
    return ds.flat_map(two_rows)


def tokenize(ds: tf.data.Dataset, output_features) -> tf.data.Dataset:
    """Like seqio.preprocessors.tokenize, but a literal `</s>` in the inputs (the paper's NLI
    premise/hypothesis separator) becomes the EOS id, as the Hugging Face tokenizer makes it."""
    def encode(ex):
        ex = dict(ex)
        vocab = output_features["inputs"].vocabulary
        pieces = tf.strings.split(ex["inputs"], sources.NLI_SEPARATOR)
        ids = tf.cast(vocab.encode_tf(pieces), tf.int32)
        eos = tf.RaggedTensor.from_tensor(tf.fill([tf.shape(pieces)[0], 1], tf.cast(vocab.eos_id, tf.int32)))
        ex["inputs_pretokenized"], ex["targets_pretokenized"] = ex["inputs"], ex["targets"]
        ex["inputs"] = tf.concat([ids, eos], axis=1).flat_values[:-1]
        ex["targets"] = tf.cast(output_features["targets"].vocabulary.encode_tf(ex["targets"]), tf.int32)
        return ex
    return ds.map(encode, num_parallel_calls=tf.data.AUTOTUNE)


# --- registration --------------------------------------------------------------------------

def _add_task(name: str, source: seqio.DataSource, preprocessors: list, metric_fns: list,
              shuffle_buffer_size: int | None = seqio.SHUFFLE_BUFFER_SIZE, cacheable: bool = True) -> None:
    """`cacheable`: a `seqio.CacheDatasetPlaceholder` after the deterministic preprocessing (rows
    and tokens, nothing random or length-dependent), so `t5x-sbs cache-tasks` can store them and a run
    with `use_cached` reads them back (tasks/cache.py); the uncached path yields the same rows. The
    paired tasks are not cacheable: their source shuffles whole examples (label + rationale rows
    adjacent), which a cache's row-level shuffle would break."""
    if name in seqio.TaskRegistry.names():
        seqio.TaskRegistry.remove(name)
    cache = [seqio.CacheDatasetPlaceholder()] if cacheable else []
    seqio.TaskRegistry.add(name, source=source, output_features=output_features(),
                           preprocessors=preprocessors + cache + [seqio.preprocessors.append_eos_after_trim],
                           metric_fns=metric_fns, postprocess_fn=strip_output,
                           shuffle_buffer_size=shuffle_buffer_size)


# task name -> number of its train rows, for `tasks.config.mixture_rates.mode = 'examples'`.
_TRAIN_ROWS: dict[str, Callable[[], int]] = {}


def mixture_rate(task_name: str, task: seqio.Task | None = None) -> float:
    """The rate of a task in every mixture, read from gin when the mixture is built."""
    del task
    options = config.mixture_rates()
    if task_name in options.rates:
        return float(options.rates[task_name])
    if options.mode == "equal":
        return 1.0
    return float(_TRAIN_ROWS[task_name]())


def _add_mixture(name: str, tasks: list[str]) -> None:
    if name in seqio.MixtureRegistry.names():
        seqio.MixtureRegistry.remove(name)
    seqio.MixtureRegistry.add(name, [(t, functools.partial(mixture_rate, t)) for t in tasks])


def _train_row_counter(build: Callable[[str], dict[str, list]]) -> Callable[[], int]:
    return lambda: len(build("train")["id"])


def register_dataset(spec: DatasetSpec) -> list[str]:
    """Registers the tasks and mixtures of one dataset; returns their names."""
    ds, metric_fns = spec.name, [METRICS[spec.metric]]
    names = []
    for source in ("gold", "llm"):
        build = functools.partial(lambda src, split: _rows(label_targets(spec, split, src), "label"), source)
        names.append(f"{ds}_label_{source}")
        _add_task(names[-1], _row_source(build, names[-1]), [tokenize], metric_fns)
        _TRAIN_ROWS[names[-1]] = _train_row_counter(build)
    names.append(f"{ds}_rationale_llm")
    build = lambda split: _rows(rationale_targets(spec, split), "rationale")  # noqa: E731
    _add_task(names[-1], _row_source(build, names[-1]), [tokenize], [])
    _TRAIN_ROWS[names[-1]] = _train_row_counter(build)
    for source in ("gold", "llm"):
        names.append(f"{mixture_name(ds, 'sbs', source)}_paired")
        build = functools.partial(lambda src, split: paired_rows(spec, split, src), source)
        _add_task(names[-1], _pair_source(build, names[-1]), [unpair, tokenize], [], shuffle_buffer_size=None,
                  cacheable=False)
        _add_mixture(mixture_name(ds, "standard", source), [f"{ds}_label_{source}"])
        _add_mixture(mixture_name(ds, "sbs", source), [f"{ds}_label_{source}", f"{ds}_rationale_llm"])
        names += [mixture_name(ds, "standard", source), mixture_name(ds, "sbs", source)]
    return names


def register_augmented_mixtures(base: str, extra: str) -> list[str]:
    """`{base}_{extra}_{standard|sbs}_{gold|llm}`: the base dataset's mixtures plus the extra
    data set's teacher-labelled tasks, used as unlabeled problems (so always its *_llm tasks),
    e.g. ASDiv for SVAMP. Validation/test stay the base dataset's own tasks."""
    names = []
    for source in ("gold", "llm"):
        for method, extra_tasks in (("standard", [f"{extra}_label_llm"]),
                                    ("sbs", [f"{extra}_label_llm", f"{extra}_rationale_llm"])):
            base_tasks = [t.name for t in seqio.get_mixture_or_task(mixture_name(base, method, source)).tasks]
            names.append(mixture_name(f"{base}_{extra}", method, source))
            _add_mixture(names[-1], base_tasks + extra_tasks)
    return names


def builtin_spec(dataset: str, metric: str = "accuracy") -> DatasetSpec:
    """A dataset read by `t5x_sbs.data.sources` (or TFDS, `tasks.config.tfds_data_dirs`), its
    teacher from a configured store (`tasks.config.teacher_files`) or the paper's PaLM replay."""
    def tfds_dir() -> str | None:
        return config.tfds_data_dirs().get(dataset)

    def load(data_dir: str, split: str) -> list[Example]:
        return sources.split_examples(dataset, data_dir, split, tfds_data_dir=tfds_dir())

    def teacher(data_dir: str, split: str, examples: list[Example]) -> list[parsing.TeacherOutput]:
        store, require_all = config.teacher_files().get(dataset), config.teacher_coverage() == "all"
        file_split = split if (split != "validation" or dataset in sources.HAS_VALIDATION) else "train"
        if store:
            file_examples = sources.load_examples(dataset, data_dir, file_split, tfds_data_dir=tfds_dir())
            return store_reading.teacher_from_store(store, examples, file_examples, require_all=require_all,
                                              reading=config.teacher_reading())
        if dataset not in sources.PALM_DATASETS:
            raise sources.DataError(f"<{dataset}>", None, "teacher_files",
                                    f"{dataset} has no stored PaLM outputs: its *_llm tasks need a teacher store, "
                                    f"gin `tasks.config.teacher_files.files = {{'{dataset}': 'stores/{dataset}.jsonl'}}`")
        by_id = {o.example.id: o for o in aligned_outputs.load_palm_teacher(dataset, data_dir, split)}
        missing = [e.id for e in examples if e.id not in by_id]
        if missing and require_all:
            raise sources.DataError(f"<{dataset}/{split}>", None, "id",
                                    f"{len(missing)} examples have no stored PaLM output (first: {missing[0]!r}); "
                                    "bind a teacher store in tasks.config.teacher_files")
        return [by_id[e.id] for e in examples if e.id in by_id]

    return DatasetSpec(name=dataset, load=load, teacher=teacher, metric=metric)

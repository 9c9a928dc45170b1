"""TFDS as an alternative source for the datasets TFDS has (e-SNLI, ANLI round 1).

A prepared TFDS dataset under `tfds_data_dir` (what `tfds.builder(name).download_and_prepare()`
leaves there) is read with the real builder and turned into the same `Example`s as the paper's
JSON files: same text, gold label and id (ANLI's `uid`; e-SNLI's id is a hash of the text pair,
because TFDS does not keep the row order). Nothing is downloaded: a missing dataset is an error
naming the directory. This is how to get the train splits that ../shared/data lacks (e-SNLI train,
ANLI-R1 train); their teacher then comes from a teacher store, not the PaLM replay.
"""
from __future__ import annotations

import dataclasses
import os

from t5x_sbs.data.examples import DataError, nli_example, require_unique_ids, unique_ids
from t5x_sbs.records import Example


@dataclasses.dataclass(frozen=True)
class TfdsDataset:
    builder: str        # TFDS name with config, as `tfds.builder` takes it
    premise_key: str    # ANLI calls the premise `context`
    version: str        # the builder version these readers were written against


# ClassLabel order in both builders is entailment, neutral, contradiction (ANLI spells e, n, c),
# the same order as parsing.NLI_LABELS, so the stored int maps straight to our label.
TFDS_DATASETS = {
    "esnli": TfdsDataset("esnli", "premise", "0.1.0"),
    "anli1": TfdsDataset("anli/r1", "context", "0.1.0"),
}
_TFDS_SPLIT = {"train": "train", "validation": "validation", "test": "test"}


def tfds_builder(dataset: str, tfds_data_dir: str):
    """The real TFDS builder of `dataset`, reading and writing under `tfds_data_dir`."""
    import tensorflow_datasets as tfds

    if dataset not in TFDS_DATASETS:
        raise ValueError(f"no TFDS source for {dataset!r}; TFDS sources exist for {sorted(TFDS_DATASETS)}")
    return tfds.builder(TFDS_DATASETS[dataset].builder, data_dir=os.fspath(tfds_data_dir))


def load_tfds_examples(dataset: str, tfds_data_dir: str, split: str) -> list[Example]:
    """Every example of a prepared TFDS split as `Example`s (TFDS's stored order)."""
    import tensorflow_datasets as tfds

    builder = tfds_builder(dataset, tfds_data_dir)
    spec = TFDS_DATASETS[dataset]
    if not builder.is_prepared():
        raise DataError(os.path.join(os.fspath(tfds_data_dir), spec.builder), None, None,
                        f"no prepared TFDS dataset {spec.builder!r} (version {builder.version}); "
                        "this machine cannot download: prepare it where it can and copy the directory")
    tfds_split = _TFDS_SPLIT[split]
    if tfds_split not in builder.info.splits:
        raise DataError(builder.data_dir, None, None, f"TFDS {spec.builder} has no split {tfds_split!r}")
    where = os.path.join(builder.data_dir, f"{builder.name}-{tfds_split}")
    examples = []
    for index, row in enumerate(tfds.as_numpy(builder.as_dataset(split=tfds_split, shuffle_files=False))):
        premise, hypothesis = (row[spec.premise_key].decode("utf-8"), row["hypothesis"].decode("utf-8"))
        for name, value in ((spec.premise_key, premise), ("hypothesis", hypothesis)):
            if not value.strip():
                raise DataError(where, index + 1, name, "empty")
        uid = row["uid"].decode("utf-8") if "uid" in row else None
        examples.append(nli_example(premise, hypothesis, int(row["label"]), uid, split, dataset, (where, index + 1)))
    if "uid" in spec_keys(builder):  # a source uid must be unique; text-hash ids may repeat
        require_unique_ids(examples, where)
    return unique_ids(examples)


def spec_keys(builder) -> set[str]:
    return set(builder.info.features.keys())

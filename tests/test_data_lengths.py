"""t5x_sbs.tasks.lengths: token lengths of a SeqIO task's rows and packed row lengths chosen from them."""
from __future__ import annotations

import numpy as np
import pytest
import seqio
import tensorflow as tf

from t5x_sbs.tasks import lengths


@pytest.fixture
def toy_task():
    rows = {"inputs": [[3, 4, 5, 1], [6, 1], [7, 8, 9, 10, 11, 1]], "targets": [[2, 1], [3, 4, 1], [1]]}

    def dataset_fn(split, shuffle_files, seed=None):
        return tf.data.Dataset.from_generator(
            lambda: ({k: np.int32(v[i]) for k, v in rows.items()} for i in range(3)),
            output_signature={k: tf.TensorSpec([None], tf.int32) for k in rows})

    vocab = seqio.PassThroughVocabulary(size=16)
    name = "lengths_test_toy"
    if name in seqio.TaskRegistry.names():
        seqio.TaskRegistry.remove(name)
    seqio.TaskRegistry.add(name, source=seqio.FunctionDataSource(dataset_fn, splits=["train"]), preprocessors=[],
                           output_features={k: seqio.Feature(vocab, add_eos=False) for k in rows})
    yield name
    seqio.TaskRegistry.remove(name)


def test_token_lengths_reads_every_row_untruncated(toy_task):
    got = lengths.token_lengths(toy_task)
    assert got["inputs"].tolist() == [4, 2, 6] and got["targets"].tolist() == [2, 3, 1]
    assert lengths.token_lengths(toy_task, limit=2)["inputs"].tolist() == [4, 2]


def test_pack_lengths_fit_the_longest_row_and_several_mean_rows():
    measured = {"inputs": [10, 20, 30, 100], "targets": [5, 5, 5, 5]}
    # inputs: max(p100 = 100, 3 x mean 40 = 120) -> 128; targets: max(5, 15) -> 16.
    assert lengths.pack_lengths(measured, percentile=100, rows_per_pack=3) == {"inputs": 128, "targets": 16}
    assert lengths.pack_lengths(measured, percentile=100, rows_per_pack=3, cap={"inputs": 96}) == \
        {"inputs": 96, "targets": 16}
    assert lengths.summary({"inputs": np.asarray([1, 3])})["inputs"]["mean"] == 2.0
    with pytest.raises(ValueError, match="rows_per_pack 0 must be > 0"):
        lengths.pack_lengths(measured, rows_per_pack=0)

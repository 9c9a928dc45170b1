"""The index-based training pipeline on real SVAMP rows: the same global batches for any process
count, O(1) resume from its JSON state, units kept whole, and the feature converter's layout."""
import json

import gin
import numpy as np
import pytest
import seqio

from t5x_sbs import names
from t5x_sbs.trainer import input_pipeline, prefetch
from t5x_sbs.data.feature_converter import TaskAwareEncDecFeatureConverter
from t5x_sbs.data.vocab import dataset_texts, train_sentencepiece

pytestmark = pytest.mark.shared_data
LENGTHS = {"inputs": 96, "targets": 64}


@pytest.fixture(scope="module")
def vocabulary(shared_data, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("spm") / "svamp.model")
    train_sentencepiece(dataset_texts("svamp", str(shared_data)), path, vocab_size=300)
    return path


@pytest.fixture(scope="module")
def mixture_rows(shared_data, vocabulary):
    """(rows, rates) of svamp_sbs_llm and the rows of its paired task, read once."""
    from t5x_sbs.tasks import catalog
    catalog.register_all()

    gin.clear_config()
    gin.bind_parameter("tasks.config.data_dir.path", str(shared_data))
    gin.bind_parameter("tasks.config.vocabulary_path.path", vocabulary)
    try:
        members, rates = input_pipeline._tasks_and_rates("svamp_sbs_llm")
        rows = [input_pipeline.read_task_rows(t, LENGTHS) for t in members]
        paired = input_pipeline.read_task_rows(seqio.get_mixture_or_task("svamp_sbs_llm_paired"), LENGTHS)
        unpacked = list(seqio.get_mixture_or_task("svamp_label_llm").get_dataset(
            LENGTHS, split="train", shuffle=False).take(6).as_numpy_iterator())
        converted = list(TaskAwareEncDecFeatureConverter(pack=False)(
            seqio.get_mixture_or_task("svamp_label_llm").get_dataset(LENGTHS, split="train", shuffle=False).take(6),
            LENGTHS).as_numpy_iterator())
    finally:
        gin.clear_config()
    return {"rows": rows, "rates": rates, "paired": paired, "unpacked": unpacked, "converted": converted}


def _iterator(data, batch=8, *, pack=True, seed=0, state=None, process=(0, 1), rows=None, rates=None,
              lengths=LENGTHS):
    it = input_pipeline.TrainBatches(rows or data["rows"], data["rates"] if rates is None else rates, lengths, batch,
                                     pack=pack, seed=seed, state=state)
    index, count = process
    size = batch // count
    it.rows_slice = slice(index * size, (index + 1) * size)  # as process `index` of `count` would
    return it


def _take(it, n):
    return [next(it) for _ in range(n)]


def test_unpacked_rows_equal_the_seqio_feature_converter(mixture_rows):
    examples = [(r["inputs"], r["targets"], int(r["task"])) for r in mixture_rows["unpacked"]]
    ours = input_pipeline.pack_rows([[e] for e in examples], (LENGTHS["inputs"], LENGTHS["targets"]), pack=False)
    for key in ours:
        np.testing.assert_array_equal(ours[key], np.stack([c[key] for c in mixture_rows["converted"]]), err_msg=key)


@pytest.mark.parametrize("processes", [2, 4])
def test_global_batches_do_not_depend_on_the_process_count(mixture_rows, processes):
    one = _take(_iterator(mixture_rows), 6)
    parts = [_take(_iterator(mixture_rows, process=(i, processes)), 6) for i in range(processes)]
    for step, batch in enumerate(one):
        for key, value in batch.items():
            joined = np.concatenate([p[step][key] for p in parts])
            np.testing.assert_array_equal(joined, value, err_msg=f"step {step} {key}")


def test_resume_from_state_is_exact_and_json(mixture_rows):
    it = _iterator(mixture_rows)
    _take(it, 5)
    state = json.loads(json.dumps(it.state()))
    assert state["batches_consumed"] == 5 and len(state["counts"]) == 2
    rest = _take(it, 4)
    resumed = _take(_iterator(mixture_rows, state=state), 4)
    for a, b in zip(rest, resumed):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    with pytest.raises(ValueError, match="does not fit"):
        _iterator(mixture_rows, state={**state, "counts": [1]})


def test_packed_rows_hold_whole_examples_in_stream_order(mixture_rows):
    batch = next(_iterator(mixture_rows, pack=True, lengths={"inputs": 256, "targets": 128}))
    segments = 0
    for row in range(batch["encoder_input_tokens"].shape[0]):
        for seg in set(batch["decoder_segment_ids"][row].tolist()) - {0}:
            where = batch["decoder_segment_ids"][row] == seg
            targets = batch["decoder_target_tokens"][row][where]
            np.testing.assert_array_equal(batch["decoder_input_tokens"][row][where], np.r_[0, targets[:-1]])
            np.testing.assert_array_equal(batch["decoder_positions"][row][where], np.arange(where.sum()))
            assert targets[-1] == 1 and len(set(batch["decoder_task_ids"][row][where].tolist())) == 1
            segments += 1
    assert segments > batch["encoder_input_tokens"].shape[0]  # packing put several examples in a row
    assert {1, 2} <= set(np.unique(batch["decoder_task_ids"]).tolist())


def test_mixture_follows_its_rates_and_epochs_cover_every_unit(mixture_rows):
    it = _iterator(mixture_rows, batch=16, pack=False)
    _take(it, 40)
    counts = it.state()["counts"]
    assert abs(counts[0] / sum(counts) - mixture_rows["rates"][0]) < 0.08, counts
    rows = mixture_rows["rows"][0]
    stream = input_pipeline._Stream([rows], np.ones(1), seed=3)
    first_epoch = sorted(stream.unit(0, n).start for n in range(rows.num_units))
    assert first_epoch == list(rows.unit_starts[:-1])  # a permutation: every example once per epoch


def test_paired_units_stay_adjacent_and_whole(mixture_rows):
    paired = mixture_rows["paired"]
    assert paired.num_units * 2 == len(paired.inputs)
    for batch in _take(_iterator(mixture_rows, batch=5, pack=False, rows=[paired], rates=np.ones(1)), 8):
        tasks = batch["decoder_task_ids"].max(axis=1).tolist()
        real = [t for t in tasks if t]
        # label then rationale of one example, never split across batches (5 rows: one is padding)
        assert real == [names.LABEL_TASK_ID, names.RATIONALE_TASK_ID] * (len(real) // 2), tasks
        assert len(real) == 4


def test_prefetcher_keeps_order_and_raises_producer_errors():
    items = iter(range(5))

    def produce():
        value = next(items, None)
        if value is None:
            raise RuntimeError("source ran dry")
        return value

    prefetcher = prefetch.Prefetcher(produce)
    assert [next(prefetcher) for _ in range(5)] == list(range(5))
    with pytest.raises(RuntimeError, match="ran dry"):
        next(prefetcher)
    prefetcher.close()

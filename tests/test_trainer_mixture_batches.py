"""LOSS_MODE=mixture on real SVAMP (../shared/data): packed training batches of the
`svamp_sbs_llm` mixture carry label *and* rationale tokens, in the mixture's proportion, each
segment tagged with the task of the example it came from."""
import collections

import gin
import numpy as np
import pytest
import sentencepiece as spm

from t5x_sbs import names
from t5x_sbs.trainer import input_pipeline
from t5x_sbs.data.vocab import dataset_texts, train_sentencepiece

pytestmark = pytest.mark.shared_data
LENGTHS = {"inputs": 128, "targets": 128}
BATCH, NUM_BATCHES = 8, 16


@pytest.fixture(scope="module")
def vocabulary(shared_data, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("spm") / "svamp.model")
    train_sentencepiece(dataset_texts("svamp", str(shared_data)), path, vocab_size=300)
    return path


@pytest.fixture(autouse=True)
def configured(shared_data, vocabulary):
    from t5x_sbs.tasks import catalog
    catalog.register_all()

    gin.clear_config()
    gin.bind_parameter("tasks.config.data_dir.path", str(shared_data))
    gin.bind_parameter("tasks.config.vocabulary_path.path", vocabulary)
    yield
    gin.clear_config()


def _segments(batch, vocab):
    """(task id, decoded encoder input) of every packed example in a batch."""
    out = []
    for row in range(batch["decoder_task_ids"].shape[0]):
        for seg in set(batch["decoder_segment_ids"][row].tolist()) - {0}:
            tasks_of_seg = set(batch["decoder_task_ids"][row][batch["decoder_segment_ids"][row] == seg].tolist())
            assert len(tasks_of_seg) == 1, f"row {row} segment {seg} mixes task ids {tasks_of_seg}"
            inputs = batch["encoder_input_tokens"][row][batch["encoder_segment_ids"][row] == seg]
            out.append((tasks_of_seg.pop(), vocab.decode([int(t) for t in inputs if t > 1])))
    return out


@pytest.mark.parametrize("rationale_rate, expected_fraction", [(1.0, 0.5), (0.25, 0.2)])
def test_packed_mixture_batches_hold_both_tasks_in_proportion(vocabulary, rationale_rate, expected_fraction):
    gin.bind_parameter("tasks.config.mixture_rates.rates", {"svamp_rationale_llm": rationale_rate})
    name = input_pipeline.training_task_name("svamp_sbs_llm", "mixture")
    batches = input_pipeline.train_batches(name, LENGTHS, BATCH, pack=True, seed=0)
    vocab = spm.SentencePieceProcessor(model_file=vocabulary)
    segments = [s for _, batch in zip(range(NUM_BATCHES), batches) for s in _segments(batch, vocab)]
    counts = collections.Counter(task for task, _ in segments)
    assert set(counts) == {names.LABEL_TASK_ID, names.RATIONALE_TASK_ID}, counts
    fraction = counts[names.RATIONALE_TASK_ID] / len(segments)
    # ~150 examples: the binomial standard deviation is <= 0.04, so 0.12 is a 3-sigma band.
    assert len(segments) > 120 and abs(fraction - expected_fraction) < 0.12, (fraction, len(segments))
    prefix = {names.LABEL_TASK_ID: "predict:", names.RATIONALE_TASK_ID: "explain:"}
    for task, text in segments:  # each id belongs to the example it tags
        assert text.startswith(prefix[task]), (task, text[:40])

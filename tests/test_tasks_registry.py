"""SeqIO tasks/mixtures: names, fractions, coverage, pairing, prefixes, custom JSONL, packing."""
import json

import gin
import numpy as np
import pytest
import seqio
import tensorflow as tf

from t5x_sbs.data import sources
from t5x_sbs.data.feature_converter import TaskAwareEncDecFeatureConverter
from t5x_sbs.data.vocab import dataset_texts, train_sentencepiece
from t5x_sbs.tasks import catalog, custom, registry

catalog.register_all()

pytestmark = pytest.mark.shared_data
LENGTHS = {"inputs": 96, "targets": 48}


@pytest.fixture(scope="module", autouse=True)
def configured(shared_data, tmp_path_factory):
    spm_path = str(tmp_path_factory.mktemp("vocab") / "svamp.model")
    train_sentencepiece(dataset_texts("svamp", str(shared_data)), spm_path, vocab_size=300)
    gin.clear_config()
    gin.bind_parameter("tasks.config.vocabulary_path.path", spm_path)
    gin.bind_parameter("tasks.config.data_dir.path", str(shared_data))
    yield spm_path
    gin.clear_config()


def _rows(name, split="train", **kw):
    task = seqio.get_mixture_or_task(name)
    return list(task.get_dataset(LENGTHS, split=split, shuffle=False, **kw).as_numpy_iterator())


def test_every_name_is_registered():
    for ds in ("cqa", "svamp", "anli1", "esnli", "gsm8k", "asdiv", "cose"):
        for t in ("label_gold", "label_llm", "rationale_llm", "sbs_gold_paired", "sbs_llm_paired"):
            assert f"{ds}_{t}" in seqio.TaskRegistry.names()
        for m in ("standard_gold", "standard_llm", "sbs_gold", "sbs_llm"):
            assert f"{ds}_{m}" in seqio.MixtureRegistry.names()
    assert {t.name for t in seqio.get_mixture_or_task("svamp_sbs_llm").tasks} == {"svamp_label_llm", "svamp_rationale_llm"}
    assert seqio.get_mixture_or_task("svamp_label_gold").metric_fns


def test_label_and_rationale_rows(configured):
    gold = _rows("svamp_label_gold", "test")
    assert len(gold) == 200 and all(r["task"] == 1 for r in gold)
    assert gold[0]["inputs_pretokenized"].decode().startswith("predict: Paige")
    assert gold[0]["targets_pretokenized"] == b"( 10.0 * 45.0 )" and gold[0]["targets"][-1] == 1
    rationale = _rows("svamp_rationale_llm", "test")
    assert rationale[0]["task"] == 2 and rationale[0]["inputs_pretokenized"].startswith(b"explain: ")
    assert len(rationale) == 198  # two PaLM outputs do not parse
    llm_train = _rows("svamp_label_llm", "train")
    assert 600 < len(llm_train) < 800  # 90% of 800 minus unparseable teacher outputs
    assert _rows("svamp_label_llm", "test")[0]["targets_pretokenized"] == b"( 10.0 * 45.0 )"  # eval is on gold


def test_fraction_and_coverage_are_nested_subsets():
    ids = {}
    for fraction in (0.125, 0.25, 0.5, 1.0):
        with gin.unlock_config():
            gin.bind_parameter("tasks.config.data_options.fraction", fraction)
        ids[fraction] = {r["id"] for r in _rows("svamp_label_gold")}
    assert ids[0.125] < ids[0.25] < ids[0.5] < ids[1.0]
    with gin.unlock_config():
        gin.bind_parameter("tasks.config.data_options.fraction", 1.0)
        gin.bind_parameter("tasks.config.data_options.rationale_coverage", 0.5)
    rationale_ids = {r["id"] for r in _rows("svamp_rationale_llm")}
    assert rationale_ids < ids[1.0] and 0.4 < len(rationale_ids) / len(ids[1.0]) < 0.6
    with gin.unlock_config():
        gin.bind_parameter("tasks.config.data_options.rationale_coverage", 1.0)


def test_paired_rows_are_adjacent_and_shuffled_per_example():
    task = seqio.get_mixture_or_task("svamp_sbs_llm_paired")
    rows = list(task.get_dataset(LENGTHS, split="train", shuffle=True, seed=1).as_numpy_iterator())
    assert len(rows) % 2 == 0
    for label_row, rationale_row in zip(rows[::2], rows[1::2]):
        assert (label_row["task"], rationale_row["task"]) == (1, 2) and label_row["id"] == rationale_row["id"]
    other = list(task.get_dataset(LENGTHS, split="train", shuffle=True, seed=2).as_numpy_iterator())
    assert [r["id"] for r in rows] != [r["id"] for r in other]


def test_paper_prefixes_one_flag_away():
    with gin.unlock_config():
        gin.bind_parameter("tasks.config.prefixes.style", "paper")
    try:
        assert _rows("svamp_label_gold", "test")[0]["inputs_pretokenized"].startswith(b"[label] ")
        assert _rows("svamp_rationale_llm", "test")[0]["inputs_pretokenized"].startswith(b"[rationale] ")
    finally:
        with gin.unlock_config():
            gin.bind_parameter("tasks.config.prefixes.style", "code")


def test_nli_separator_becomes_eos(configured):
    task = seqio.get_mixture_or_task("anli1_label_gold")
    row = next(task.get_dataset({"inputs": 1024, "targets": 8}, split="test", shuffle=False).as_numpy_iterator())
    vocab = seqio.SentencePieceVocabulary(configured)
    premise = row["inputs_pretokenized"].decode().split("</s>")[0]
    n = len(vocab.encode(premise))
    assert row["inputs"][n] == 1 and row["inputs"][-1] == 1 and b"</s>" in row["inputs_pretokenized"]


def test_custom_jsonl_dataset(tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"q": f"what is {i}+1?", "a": str(i + 1)}) + "\n" for i in range(40)))
    store = tmp_path / "teacher.jsonl"
    store.write_text("".join(json.dumps({"id": f"train-{i}", "input": {"q": "?"}, "rationale": f"{i} plus one",
                                         "label": str(i + 1), "status": "ok"}) + "\n" for i in range(40)))
    names = custom.register_jsonl_dataset("toy", str(train), input_fields=("q",), label_field="a",
                                         teacher_file=str(store))
    assert "toy_sbs_llm" in names and "toy_sbs_llm" in seqio.MixtureRegistry.names()
    train_rows, valid_rows = _rows("toy_rationale_llm"), _rows("toy_label_gold", "validation")
    assert len(train_rows) + len(valid_rows) == 40 and valid_rows
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"q": "x", "a": "1"}) + "\n" + json.dumps({"q": "y"}) + "\n")
    custom.register_jsonl_dataset("toybad", str(bad), input_fields=("q",), label_field="a")
    with pytest.raises(Exception, match=r"bad.jsonl:2: field 'a': missing or empty target"):
        _rows("toybad_label_gold", "validation")


def _fake_rows():
    rows = [([5, 6, 7], [8, 9], 1), ([10, 11], [12, 13, 14, 15], 2), ([16], [17], 1), ([18, 19], [20, 21, 22], 2)]
    return tf.data.Dataset.from_generator(
        lambda: ({"inputs": np.array(i, np.int32), "targets": np.array(t, np.int32), "task": np.int32(k)}
                 for i, t, k in rows),
        output_signature={"inputs": tf.TensorSpec([None], tf.int32), "targets": tf.TensorSpec([None], tf.int32),
                          "task": tf.TensorSpec([], tf.int32)})


def test_task_ids_survive_packing():
    lengths = {"inputs": 8, "targets": 8}
    unpacked = list(TaskAwareEncDecFeatureConverter(pack=False)(_fake_rows(), lengths).as_numpy_iterator())
    packed = list(TaskAwareEncDecFeatureConverter(pack=True)(_fake_rows(), lengths).as_numpy_iterator())
    assert len(packed) < len(unpacked)
    per_token_unpacked = [(t, k) for r in unpacked for t, k in zip(r["decoder_target_tokens"], r["decoder_task_ids"]) if t]
    per_token_packed = [(t, k) for r in packed for t, k in zip(r["decoder_target_tokens"], r["decoder_task_ids"]) if t]
    assert sorted(per_token_unpacked) == sorted(per_token_packed)
    assert unpacked[1]["decoder_task_ids"].tolist() == [2, 2, 2, 2, 0, 0, 0, 0]
    for r in packed:
        assert ((r["decoder_task_ids"] == 0) == (r["decoder_target_tokens"] == 0)).all()
        for seg in set(r["decoder_segment_ids"].tolist()) - {0}:
            assert len(set(r["decoder_task_ids"][r["decoder_segment_ids"] == seg].tolist())) == 1

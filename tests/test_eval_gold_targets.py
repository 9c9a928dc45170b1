"""A target the vocabulary cannot spell: counted when training reads it, never scored as a match.

The quick demo once trained its students on a vocabulary learnt from the task's inputs alone,
which hold only the digits 1-6: every answer 0 or 7-12 encoded to the unknown piece, and an
"unknown" prediction matched the decoded "unknown" target.
"""
import json

import gin
import pytest
import seqio

from t5x_sbs.trainer import evaluation, input_pipeline
from t5x_sbs.data.vocab import train_sentencepiece
from t5x_sbs.experiments import pretrained
from t5x_sbs.tasks.custom import register_jsonl_dataset

LENGTHS = {"inputs": 32, "targets": 8}


@pytest.fixture()
def digits_1_to_6(tmp_path):
    """A JSONL dataset whose inputs hold the digits 1-6 only; answers include 7 and 9."""
    rows = [{"id": f"q{i}", "question": f"Ann has {1 + i % 6} apples and {1 + (i + 2) % 6} pens.",
             "answer": str([7, 3, 9, 5][i % 4])} for i in range(40)]
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    inputs_only = train_sentencepiece([r["question"] for r in rows] + ["predict: explain:"] * 5,
                                      str(tmp_path / "inputs_only.model"), vocab_size=60)
    register_jsonl_dataset("digits16", train_path=str(path), validation_path=str(path), input_fields=("question",),
                           label_field="answer", id_field="id")
    gin.clear_config()
    gin.bind_parameter("tasks.config.vocabulary_path.path", inputs_only)
    yield rows, inputs_only
    gin.clear_config()


def test_training_counts_targets_that_encode_to_unknown(digits_1_to_6, caplog):
    rows, _ = digits_1_to_6
    task = seqio.get_mixture_or_task("digits16_label_gold")
    with caplog.at_level("WARNING"):
        read = input_pipeline.read_task_rows(task, LENGTHS)
    spelled_wrong = sum(r["answer"] in "79" for r in rows)  # validation_path given: train is the whole file
    assert spelled_wrong == 20 and len(read.targets) == 40
    assert f"{spelled_wrong} of {len(read.targets)} train targets hold the vocabulary's unknown piece" in caplog.text


def test_metrics_compare_with_the_target_text(digits_1_to_6):
    rows, _ = digits_1_to_6
    texts = input_pipeline.eval_target_texts("digits16_label_gold", "validation")
    assert texts == [r["answer"] for r in rows]
    vocab = seqio.get_mixture_or_task("digits16_label_gold").output_features["targets"].vocabulary
    unknown = vocab.decode(list(vocab.encode("7")))  # what the decoded target and a guess both read as
    assert unknown != "7"
    predictions = [{"prediction": unknown, "target": unknown} for _ in rows]
    assert evaluation.decode_metrics("digits16_label_gold", predictions)["accuracy"] == 1.0  # the old bug
    scored = evaluation.with_gold_targets(predictions, "digits16_label_gold", "validation", None)
    assert evaluation.decode_metrics("digits16_label_gold", scored)["accuracy"] == 0.0
    right = [{"prediction": r["answer"], "target": unknown} for r in rows[:10]]  # max_rows: the first 10
    assert evaluation.decode_metrics("digits16_label_gold", evaluation.with_gold_targets(
        right, "digits16_label_gold", "validation", 10))["accuracy"] == 1.0
    with pytest.raises(RuntimeError, match="10 target texts for 40 predictions"):
        evaluation.with_gold_targets(predictions, "digits16_label_gold", "validation", 10)


def test_the_pretrained_vocabulary_spells_every_digit(tmp_path):
    import sentencepiece as spm

    path = pretrained.train_vocabulary(["Ann has 3 apples. Ann finds 2 more apples."] * 50,
                                       str(tmp_path / "spiece.model"), vocab_size=200)
    sp = spm.SentencePieceProcessor(model_file=path)
    for text in ["0", "7", "12", "8 + 9 = 17.", "x = (4 * 5) / 2"]:
        assert sp.unk_id() not in sp.encode(text), text
        assert sp.decode(sp.encode(text)) == text


def test_split_inputs_build_each_split_once_and_score_with_the_target_text(digits_1_to_6, monkeypatch):
    """Validation runs every EVAL_EVERY steps on the same split: its batches and texts are built once."""
    rows, _ = digits_1_to_6
    built = []
    for name in ("eval_batches", "eval_target_texts"):
        real = getattr(input_pipeline, name)
        monkeypatch.setattr(input_pipeline, name, lambda *a, _real=real, _name=name, **k: built.append(_name) or _real(*a, **k))
    inputs = evaluation.SplitInputs("digits16_label_gold", "validation", LENGTHS, 16, max_batches=2)
    first = inputs.batches("digits16_label_gold")
    assert inputs.batches("digits16_label_gold") is first and len(first) == 2 and first[0]["encoder_input_tokens"].shape == (16, 32)
    predictions = [{"prediction": r["answer"], "target": "?"} for r in rows[:32]]  # max_batches 2 x 16 rows
    for _ in range(2):
        scored = inputs.scored_predictions(predictions)
        assert [p["target"] for p in scored] == [r["answer"] for r in rows[:32]]
    assert built == ["eval_batches", "eval_target_texts"]

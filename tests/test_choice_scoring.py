"""experiments.choice_scoring: rank classification of a multiple-choice student through transformers,
on CQA questions from ../shared/data and a tiny random T5 with a SentencePiece model of their text."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from t5x_sbs.experiments import choice_scoring

PREFIX = "predict: "


@pytest.fixture(scope="module")
def cqa_student(tmp_path_factory, shared_data):
    import torch
    import transformers

    from t5x_sbs.data import vocab
    from t5x_sbs.teacher import annotation

    examples = annotation.load_examples("cqa", str(shared_data), "test")[:6]
    texts = [e.text for e in annotation.load_examples("cqa", str(shared_data), "train")[:2000]]
    spm_path = vocab.train_sentencepiece(texts, str(tmp_path_factory.mktemp("vocab") / "spiece.model"), 300)
    tokenizer = transformers.T5TokenizerFast(vocab_file=spm_path, extra_ids=0)
    torch.manual_seed(0)
    config = transformers.T5Config(vocab_size=384, d_model=32, d_kv=8, d_ff=64, num_heads=4, num_layers=2,
                                   num_decoder_layers=2, feed_forward_proj="gated-gelu", dropout_rate=0.0,
                                   decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    return transformers.T5ForConditionalGeneration(config).eval(), tokenizer, examples


def _one_by_one(model, tokenizer, prompt: str, choice: str) -> float:
    """The choice's summed log-likelihood from transformers' own loss (a mean over its tokens)."""
    import torch

    labels = tokenizer(choice, return_tensors="pt").input_ids
    with torch.no_grad():
        loss = model(**tokenizer(prompt, return_tensors="pt"), labels=labels).loss
    return -float(loss) * labels.shape[1]


@pytest.mark.shared_data
def test_batched_scores_equal_one_pair_at_a_time(cqa_student):
    model, tokenizer, examples = cqa_student
    pairs = [(PREFIX + e.text, c) for e in examples[:3] for c in e.input["choices"]]
    assert len({len(tokenizer(c).input_ids) for _, c in pairs}) > 1  # padding is exercised
    batched = choice_scoring.choice_log_likelihoods(model, tokenizer, *zip(*pairs))
    single = [_one_by_one(model, tokenizer, p, c) for p, c in pairs]
    np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-4)
    assert batched.shape == (len(pairs),)


@pytest.mark.shared_data
def test_the_likeliest_choice_is_the_answer(cqa_student):
    model, tokenizer, examples = cqa_student
    likeliest = [max(e.input["choices"], key=lambda c: _one_by_one(model, tokenizer, PREFIX + e.text, c))
                 for e in examples]
    as_gold = [dataclasses.replace(e, gold=best) for e, best in zip(examples, likeliest)]
    assert choice_scoring.rank_correct(model, tokenizer, as_gold, PREFIX, batch_examples=4).tolist() == [1.0] * 6
    others = [dataclasses.replace(e, gold=next(c for c in e.input["choices"] if c != best))
              for e, best in zip(examples, likeliest)]
    assert choice_scoring.rank_correct(model, tokenizer, others, PREFIX, batch_examples=4).tolist() == [0.0] * 6


@pytest.mark.shared_data
def test_wrote_a_choice_reads_the_trainers_predictions(tmp_path, shared_data):
    """The trainer's predictions file (test order) folds the question's newlines into spaces and
    cuts long inputs; each prediction is matched to its question's choices, and a file of other
    questions fails naming the file."""
    import json

    from t5x_sbs.teacher import annotation

    examples = annotation.load_examples("cqa", str(shared_data), "test")[:4]
    answers = [examples[0].input["choices"][1], examples[1].gold, "not a choice", examples[3].gold + "s"]
    rows = [{"input": PREFIX + " ".join(e.text.split()), "prediction": a} for e, a in zip(examples, answers)]
    rows[2]["input"] = rows[2]["input"][:40]  # cut at --inputs_length
    (tmp_path / "predictions_test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert choice_scoring.wrote_a_choice(str(tmp_path), examples) == 0.5
    with pytest.raises(ValueError, match="predictions_test.jsonl: 4 predictions for 4 test questions, 4 not of"):
        choice_scoring.wrote_a_choice(str(tmp_path), examples[1:] + examples[:1])

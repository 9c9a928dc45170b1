"""Span corruption (t5x_sbs.data.span_corruption) through the real SeqIO pretraining tasks
(tasks/pretrain.py), on synthetic text: sentinels, exact reconstruction, T5's lengths and
noise density, determinism, the user-text and C4 sources, and the decontamination rule."""
import json

import gin
import numpy as np
import pytest
import seqio

from t5x_sbs.data import arith, pretrain_corpus, span_corruption, vocab
from t5x_sbs.tasks import catalog

catalog.register_all()  # the span-corruption tasks

LENGTHS = {"inputs": 64, "targets": 32}


@pytest.fixture(scope="module")
def texts():
    problems = arith.generate(seed=3, sizes={"train": 300, "validation": 1, "test": 1})["train"]
    return [f"{p.question} {p.rationale} The answer is {p.answer}." for p in problems]


@pytest.fixture(scope="module")
def spm_path(texts, tmp_path_factory):
    return vocab.train_sentencepiece(texts, str(tmp_path_factory.mktemp("spm") / "spiece.model"), 200)


@pytest.fixture
def text_task(texts, spm_path, tmp_path):
    half = len(texts) // 2
    (tmp_path / "a.txt").write_text("\n".join(texts[:half]) + "\n\n")
    (tmp_path / "b.jsonl").write_text("".join(json.dumps({"body": t, "n": 1}) + "\n" for t in texts[half:]))
    gin.clear_config()
    gin.bind_parameter("tasks.config.vocabulary_path.path", spm_path)
    gin.bind_parameter("tasks.config.vocabulary_extra_ids.extra_ids", 100)
    gin.bind_parameter("tasks.pretrain.text_files.paths", [str(tmp_path / "*.txt"), str(tmp_path / "b.jsonl")])
    gin.bind_parameter("tasks.pretrain.text_files.jsonl_field", "body")
    gin.bind_parameter("tasks.pretrain.options.validation_fraction", 0.1)
    yield seqio.get_mixture_or_task("text_span_corruption")
    gin.clear_config()


def rows(task, split="train", lengths=LENGTHS):
    return list(task.get_dataset(lengths, split=split, shuffle=False).as_numpy_iterator())


def documents(task, split="train"):
    """The same split's documents, tokenized (EOS-free), in source order."""
    ds = task.source.get_dataset(split=split, shuffle=False)
    vocabulary = task.output_features["targets"].vocabulary
    return [list(vocabulary.encode(ex["text"].decode())) for ex in ds.as_numpy_iterator()]


def test_t5_lengths():
    assert span_corruption.random_spans_helper(512) == (568, 114)  # T5's 512 / 114


def test_targets_hold_sentinels_and_reconstruct_the_masked_spans(text_task):
    vocabulary = text_task.output_features["targets"].vocabulary
    size, extra = vocabulary.vocab_size, vocabulary.extra_ids
    assert extra == 100
    out, docs = rows(text_task), documents(text_task)
    assert len(docs) > 200 and len(out) >= len(docs)  # longer documents make several segments
    noise, restored = 0, []
    for row in out:
        inputs, targets = list(row["inputs"]), list(row["targets"])
        assert inputs[-1] == targets[-1] == vocabulary.eos_id
        inputs, targets = inputs[:-1], targets[:-1]
        sentinels = [t for t in targets if t >= size - extra]
        assert sentinels == list(range(size - 1, size - 1 - len(sentinels), -1))  # <extra_id_0>, 1, ...
        assert [t for t in inputs if t >= size - extra] == sentinels[:len([t for t in inputs if t >= size - extra])]
        restored += span_corruption.reconstruct(inputs, targets, size, extra)
        noise += len(targets) - len(sentinels)
    assert restored == [t for doc in docs for t in doc]  # segments in document order
    total = len(restored)
    assert 0.12 < noise / total < 0.18  # noise_density 0.15 (rounded per document)
    assert "<extra_id_0>" in vocabulary.decode(out[0]["targets"].tolist())


def test_corruption_is_deterministic_and_validation_is_held_out(text_task):
    first, second = rows(text_task), rows(text_task)
    assert all(np.array_equal(a["inputs"], b["inputs"]) and np.array_equal(a["targets"], b["targets"])
               for a, b in zip(first, second))
    train_docs = {tuple(d) for d in documents(text_task)}
    validation_docs = {tuple(d) for d in documents(text_task, "validation")}
    assert validation_docs and not validation_docs & train_docs


def test_long_documents_are_split_into_segments_that_fill_the_inputs(text_task, texts, tmp_path):
    (tmp_path / "long.txt").write_text(" ".join(texts) + "\n")
    gin.bind_parameter("tasks.pretrain.text_files.paths", [str(tmp_path / "long.txt")])
    gin.bind_parameter("tasks.pretrain.options.validation_fraction", 0.0)
    out = rows(text_task)
    tokens_length, targets_length = span_corruption.random_spans_helper(LENGTHS["inputs"])
    assert len(out) > 10
    assert all(len(r["inputs"]) <= LENGTHS["inputs"] and len(r["targets"]) <= targets_length for r in out)
    assert max(len(r["inputs"]) for r in out) == LENGTHS["inputs"]  # full segments fill the inputs exactly


def test_sentinels_and_lengths_are_checked(text_task):
    gin.bind_parameter("tasks.config.vocabulary_extra_ids.extra_ids", 0)
    with pytest.raises(ValueError, match="vocabulary_extra_ids"):
        rows(text_task)
    gin.bind_parameter("tasks.config.vocabulary_extra_ids.extra_ids", 100)
    with pytest.raises(ValueError, match="targets length >= 114"):
        rows(text_task, lengths={"inputs": 512, "targets": 64})


def test_bad_user_text_names_file_line_and_field(text_task, tmp_path):
    (tmp_path / "bad.jsonl").write_text(json.dumps({"body": "fine"}) + "\n" + json.dumps({"other": 1}) + "\n")
    gin.bind_parameter("tasks.pretrain.text_files.paths", [str(tmp_path / "bad.jsonl")])
    with pytest.raises(Exception, match=r"bad\.jsonl:2: field 'body'"):
        rows(text_task)
    gin.bind_parameter("tasks.pretrain.text_files.paths", [str(tmp_path / "missing*.txt")])
    with pytest.raises(ValueError, match="matches no file"):
        rows(text_task)


def test_c4_needs_a_prepared_data_dir(spm_path, tmp_path):
    gin.clear_config()
    gin.bind_parameter("tasks.config.vocabulary_path.path", spm_path)
    gin.bind_parameter("tasks.config.vocabulary_extra_ids.extra_ids", 100)
    task = seqio.get_mixture_or_task("c4_span_corruption")
    try:
        with pytest.raises(ValueError, match="tasks.pretrain.c4.data_dir"):
            rows(task)
        gin.bind_parameter("tasks.pretrain.c4.data_dir", str(tmp_path))
        with pytest.raises(ValueError, match=r"c4/en:3\.1\.0 .*(not prepared|not found)"):
            rows(task)
    finally:
        gin.clear_config()


def test_decontamination_drops_documents_holding_eval_text_whatever_the_numbers():
    fragments = {pretrain_corpus.normalise_words("Ann has 4 apples. She buys 3 more apples."): "x/test",
                 pretrain_corpus.normalise_words("A man sleeps"): "x/validation"}  # 3 words: too short
    fragments = {k: v for k, v in fragments.items() if len(k) >= pretrain_corpus.MIN_FRAGMENT_WORDS}
    docs = [pretrain_corpus.Document("1", "s", "First, ANN has 12 apples; she buys 7 more apples! Then..."),
            pretrain_corpus.Document("2", "s", "Ann has 4 apples. She sells 3 apples."),
            pretrain_corpus.Document("3", "s", "A man sleeps on a bench.")]
    kept, dropped = pretrain_corpus.decontaminate(docs, fragments)
    assert [d.id for d in kept] == ["2", "3"] and [(d.id, where) for d, where in dropped] == [("1", "x/test")]

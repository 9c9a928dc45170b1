"""The offline pretraining corpus (t5x_sbs.data.pretrain_corpus) holds no validation/test text.

Checked independently of the filter that built it: an n-gram set of the whole corpus finds
every eval fragment (question, premise, hypothesis, problem body of every dataset's
validation and test split) whose n-grams all occur in it, and those candidates are searched
for as whole runs of words. Also: every document comes from a train-view example, the SVAMP
test problems' ASDiv originals are out, and a vocabulary trained on the corpus tokenizes the
finetuning tasks identically with and without the 100 sentinel ids.
"""
import collections

import gin
import numpy as np
import pytest
import seqio

from t5x_sbs.data import pretrain_corpus, sources, vocab

pytestmark = pytest.mark.shared_data
N = pretrain_corpus.MIN_FRAGMENT_WORDS


@pytest.fixture(scope="module")
def corpus(shared_data):
    return pretrain_corpus.shared_corpus(str(shared_data))


def test_no_validation_or_test_text_in_the_corpus(corpus, shared_data):
    fragments = pretrain_corpus.eval_fragments(str(shared_data))
    assert len(fragments) > 30000  # esnli, anli1, cqa, svamp, gsm8k, asdiv eval splits
    docs = [pretrain_corpus.normalise_words(d.text) for d in corpus]
    ngrams = {tuple(w[i:i + N]) for w in docs for i in range(len(w) - N + 1)}
    candidates = [f for f in fragments if all(tuple(f[i:i + N]) in ngrams for i in range(len(f) - N + 1))]
    joined = "\n".join(" " + " ".join(w) + " " for w in docs)
    found = [(" ".join(f), fragments[f]) for f in candidates if " " + " ".join(f) + " " in joined]
    assert not found, found[:5]


def test_every_document_comes_from_a_train_example(corpus, shared_data):
    eval_ids = collections.defaultdict(set)
    for dataset in ("cqa", "svamp", "gsm8k", "asdiv"):
        for split in ("validation", "test"):
            if (dataset, split) != ("asdiv", "test"):
                eval_ids[dataset] |= {e.id for e in sources.load_examples(dataset, str(shared_data), split)}
    eval_ids["cose"] = eval_ids["cqa"]
    sources_seen = collections.Counter(d.source for d in corpus)
    for doc in corpus:
        dataset, example_id = doc.id.split(":")[:2]
        assert example_id not in eval_ids.get(dataset, ()), doc
    assert {"cqa/input", "cqa/palm", "cose/explanation", "svamp/palm", "gsm8k/solution", "asdiv/input",
            "anli1/palm", "gsm8k/eitnlp:gemini-level2"} <= set(sources_seen)
    assert len(corpus) > 90000


def test_asdiv_originals_of_svamp_test_problems_are_excluded(corpus, shared_data):
    """SVAMP varies ASDiv problems; those whose body is a SVAMP test body up to the numbers go."""
    def words(text):
        return " ".join(pretrain_corpus.normalise_words(text))

    test_bodies = {words(e.text.rpartition("\n")[0]) for e in sources.load_examples("svamp", str(shared_data), "test")}
    originals = {f"asdiv:{e.id}" for e in sources.load_examples("asdiv", str(shared_data), "train")
                 if words(e.input["Body"]) in test_bodies}
    assert len(originals) >= 5
    assert not originals & {d.id for d in corpus}


def test_a_corpus_vocabulary_tokenizes_the_finetuning_tasks_identically_with_sentinels(corpus, shared_data, tmp_path):
    from t5x_sbs.tasks import catalog
    catalog.register_all()

    path = vocab.train_sentencepiece([d.text for d in corpus[::20]], str(tmp_path / "spiece.model"), 1000)
    ids = {}
    for extra in (0, 100):
        gin.clear_config()
        gin.bind_parameter("tasks.config.vocabulary_path.path", path)
        gin.bind_parameter("tasks.config.data_dir.path", str(shared_data))
        gin.bind_parameter("tasks.config.vocabulary_extra_ids.extra_ids", extra)
        try:
            task = seqio.get_mixture_or_task("svamp_label_gold")
            ids[extra] = [r["inputs"] for r in task.get_dataset(None, split="test", shuffle=False).as_numpy_iterator()]
            base = task.output_features["inputs"].vocabulary.vocab_size - extra
        finally:
            gin.clear_config()
    assert len(ids[0]) == 200 and all(np.array_equal(a, b) for a, b in zip(ids[0], ids[100]))
    tokens = np.concatenate(ids[0])
    assert tokens.max() < base and np.mean(tokens == 2) < 0.01  # no sentinel ids, almost no <unk>

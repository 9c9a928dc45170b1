"""Per-dataset task modules, gin mixture rates, GSM8K/ASDiv *_llm tasks from teacher stores, and
ASDiv as extra unlabeled SVAMP training data."""
import json

import gin
import pytest
import seqio

from t5x_sbs.data import sources
from t5x_sbs.teacher import eitnlp
from t5x_sbs.data.vocab import dataset_texts, train_sentencepiece
from t5x_sbs.tasks import asdiv, catalog, cqa, gsm8k, nli, registry, svamp

catalog.register_all()

pytestmark = pytest.mark.shared_data
LENGTHS = {"inputs": 96, "targets": 48}


@pytest.fixture(scope="module")
def stores(shared_data, tmp_path_factory):
    """A GSM8K store imported from a third-party set and an ASDiv store written from its formulas."""
    root = tmp_path_factory.mktemp("stores")
    eitnlp.write_eitnlp_store(str(shared_data / "gsm8k/eitnlp_cot/gsm8k_llama_level2_ranked.json"), "gsm8k",
                              str(shared_data), str(root / "gsm8k.jsonl"))
    with open(root / "asdiv.jsonl", "w") as f:
        for e in sources.load_examples("asdiv", str(shared_data), "train"):
            formula = e.input["Formula"] or e.gold
            f.write(json.dumps({"id": e.id, "input": e.input, "rationale": f"We compute {formula}.",
                                "label": f"({formula.split('=')[0]})", "status": "ok"}) + "\n")
    spm_path = str(root / "svamp.model")
    train_sentencepiece(dataset_texts("svamp", str(shared_data)), spm_path, vocab_size=300)
    return {"gsm8k": str(root / "gsm8k.jsonl"), "asdiv": str(root / "asdiv.jsonl"), "spm": spm_path}


@pytest.fixture(autouse=True)
def configured(shared_data, stores):
    gin.clear_config()
    gin.bind_parameter("tasks.config.data_dir.path", str(shared_data))
    gin.bind_parameter("tasks.config.vocabulary_path.path", stores["spm"])
    yield
    gin.clear_config()


def _bind(**params):
    with gin.unlock_config():
        for key, value in params.items():
            gin.bind_parameter(key, value)


def test_one_module_per_dataset():
    assert "cqa_sbs_llm" in cqa.register() and "svamp_label_gold" in svamp.register() and "gsm8k_sbs_llm" in gsm8k.register()
    assert {"anli1", "esnli"} == set(nli.register()) and "asdiv_rationale_llm" in asdiv.register()
    assert set(catalog.register_all()) >= {"cqa", "cose", "svamp", "anli1", "esnli", "gsm8k", "asdiv"}
    assert {t.name for t in seqio.get_mixture_or_task("svamp_asdiv_sbs_llm").tasks} == {
        "svamp_label_llm", "svamp_rationale_llm", "asdiv_label_llm", "asdiv_rationale_llm"}
    assert {t.name for t in seqio.get_mixture_or_task("svamp_asdiv_standard_gold").tasks} == {
        "svamp_label_gold", "asdiv_label_llm"}  # ASDiv is unlabeled data: always teacher labels


def test_mixture_rates_from_gin(shared_data):
    mixture = seqio.get_mixture_or_task("svamp_sbs_gold")
    label, rationale = (seqio.get_mixture_or_task(n) for n in ("svamp_label_gold", "svamp_rationale_llm"))
    assert mixture.get_rate(label) == mixture.get_rate(rationale) == 1.0  # default: equal
    _bind(**{"tasks.config.mixture_rates.mode": "examples"})
    train = len(sources.split_examples("svamp", str(shared_data), "train"))
    assert mixture.get_rate(label) == train and 700 < train < 740  # 800 minus the hashed validation carve-out
    train_rationales = registry.rationale_targets(registry.builtin_spec("svamp", "equation"), "train")
    assert mixture.get_rate(rationale) == len(train_rationales) < train  # unparseable PaLM outputs dropped
    _bind(**{"tasks.config.mixture_rates.rates": {"svamp_rationale_llm": 0.25}})
    assert mixture.get_rate(rationale) == 0.25 and mixture.get_rate(label) == train
    with pytest.raises(ValueError, match="mixture rate mode 'nope'"):
        _bind(**{"tasks.config.mixture_rates.mode": "nope"})
        mixture.get_rate(label)


def test_gsm8k_llm_tasks_need_and_use_a_teacher_store(stores):
    spec = registry.builtin_spec("gsm8k", "gsm8k")
    with pytest.raises(sources.DataError, match=r"tasks.config.teacher_files.files = \{'gsm8k'"):
        registry.label_targets(spec, "train", "llm")
    _bind(**{"tasks.config.teacher_files.files": {"gsm8k": stores["gsm8k"]}, "tasks.config.data_options.fraction": 0.125})
    rows = list(seqio.get_mixture_or_task("gsm8k_sbs_llm").get_dataset(
        LENGTHS, split="train", shuffle=False, num_epochs=1, copy_pretokenized=True).as_numpy_iterator())
    labels = [r for r in rows if r["task"] == 1]
    rationales = [r for r in rows if r["task"] == 2]
    ok = len(registry.label_targets(spec, "train", "llm"))  # 12.5% of 7473 train minus carve-out and skips
    assert 750 < ok < 900 and len(labels) <= ok and len(rationales) <= ok  # the mix stops when one task ends
    assert min(len(labels), len(rationales)) > 0.9 * ok
    assert all(r["inputs_pretokenized"].startswith(b"predict: ") for r in labels)
    assert rationales[0]["inputs_pretokenized"].startswith(b"explain: ") and b"The answer is" not in \
        rationales[0]["targets_pretokenized"]


def test_asdiv_adds_unlabeled_problems_to_svamp(stores):
    _bind(**{"tasks.config.teacher_files.files": {"asdiv": stores["asdiv"]},
             "tasks.config.mixture_rates.mode": "examples"})
    mixture = seqio.get_mixture_or_task("svamp_asdiv_standard_llm")
    rows = list(mixture.get_dataset(LENGTHS, split="train", shuffle=True, seed=3, copy_pretokenized=True,
                                    passthrough_features=["id"]).take(300).as_numpy_iterator())
    from_asdiv = sum(r["id"].startswith(b"nluds-") for r in rows) / len(rows)
    asdiv_rows = mixture.get_rate(seqio.get_mixture_or_task("asdiv_label_llm"))
    svamp_rows = mixture.get_rate(seqio.get_mixture_or_task("svamp_label_llm"))
    assert asdiv_rows == len(registry.label_targets(registry.builtin_spec("asdiv", "equation"), "train", "llm"))
    expected = asdiv_rows / (asdiv_rows + svamp_rows)  # ~0.78: every problem equally likely
    assert abs(from_asdiv - expected) < 0.1
    asdiv_row = next(r for r in rows if r["id"].startswith(b"nluds-"))
    assert asdiv_row["targets_pretokenized"].startswith(b"(") and asdiv_row["task"] == 1


def test_task_ids_survive_mixing_and_packing():
    """A mixture keeps each row's `task` (it is an output feature), so packed batches of
    `svamp_sbs_llm` carry both label (1) and rationale (2) target tokens."""
    from t5x_sbs.data.feature_converter import TaskAwareEncDecFeatureConverter

    ds = seqio.get_dataset("svamp_sbs_llm", task_feature_lengths=LENGTHS, dataset_split="train", shuffle=True,
                           seed=1, num_epochs=1, use_cached=False,
                           feature_converter=TaskAwareEncDecFeatureConverter(pack=True))
    ids = set()
    for row in ds.take(20).as_numpy_iterator():
        ids.update(row["decoder_task_ids"].tolist())
        assert ((row["decoder_task_ids"] == 0) == (row["decoder_target_tokens"] == 0)).all()
    assert ids == {0, 1, 2}

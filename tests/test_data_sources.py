"""Readers, ids, fractions, carve-out and the data-report agreement figures on ../shared/data."""
import json

import pytest

from t5x_sbs import cli
from t5x_sbs.data import sources
from t5x_sbs.teacher import aligned_outputs

pytestmark = pytest.mark.shared_data


@pytest.mark.parametrize("dataset,split,count", [
    ("cqa", "train", 9741), ("cqa", "test", 1221), ("svamp", "train", 800), ("svamp", "test", 200),
    ("anli1", "validation", 1000), ("anli1", "test", 1000), ("esnli", "validation", 9842),
    ("esnli", "test", 9824), ("gsm8k", "train", 7473), ("gsm8k", "test", 1319), ("asdiv", "train", 2305),
    ("cose", "test", 1221),
])
def test_counts_and_unique_ids(shared_data, dataset, split, count):
    examples = sources.load_examples(dataset, str(shared_data), split)
    assert len(examples) == count
    assert len({e.id for e in examples}) == count
    assert all(e.text and e.gold for e in examples)


def test_formats_follow_the_paper(shared_data):
    cqa = sources.load_examples("cqa", str(shared_data), "test")[0]
    assert cqa.text.startswith("A beaver is know for building prowess")
    assert cqa.text.endswith("\nAnswer Choices:\n(a) british columbia\n(b) body of water\n(c) wooded area\n"
                             "(d) pay debts\n(e) zoo") and cqa.gold == "wooded area"
    nli = sources.load_examples("esnli", str(shared_data), "test")[0]
    assert nli.text == nli.input["premise"] + "</s>" + nli.input["hypothesis"] and nli.gold == "neutral"
    assert sources.load_examples("anli1", str(shared_data), "test")[0].gold == "entailment"
    svamp = sources.load_examples("svamp", str(shared_data), "test")[0]
    assert svamp.gold == "( 10.0 * 45.0 )" and "\nHow many seeds" in svamp.text
    gsm = sources.load_examples("gsm8k", str(shared_data), "test")[0]
    assert gsm.gold == "18" and gsm.text.startswith("Janet")
    asdiv = sources.load_examples("asdiv", str(shared_data), "train")[0]
    assert (asdiv.id, asdiv.gold) == ("nluds-0001", "9")
    assert sources.load_examples("cose", str(shared_data), "test")[0].input["cose_explanation"]


def test_validation_carve_out_is_deterministic_and_disjoint(shared_data):
    train = sources.split_examples("cqa", str(shared_data), "train")
    valid = sources.load_examples("cqa", str(shared_data), "validation")
    assert not {e.id for e in train} & {e.id for e in valid}
    assert len(train) + len(valid) == 9741 and 0.08 < len(valid) / 9741 < 0.12
    assert [e.id for e in valid] == [e.id for e in sources.load_examples("cqa", str(shared_data), "validation")]


def test_fractions_are_nested(shared_data):
    ids = [e.id for e in sources.load_examples("cqa", str(shared_data), "train")]
    subsets = [{i for i in ids if sources.id_fraction(i) < f} for f in (0.125, 0.25, 0.5, 1.0)]
    assert subsets[0] < subsets[1] < subsets[2] < subsets[3] == set(ids)
    for subset, f in zip(subsets, (0.125, 0.25, 0.5)):
        assert abs(len(subset) / len(ids) - f) < 0.02
    # an independent salt chooses a different subset
    assert {i for i in ids if sources.id_fraction(i, salt="rationale") < 0.25} != subsets[1]


def test_palm_outputs_align_with_examples(shared_data):
    outputs = sources.load_palm_outputs("svamp", str(shared_data), "train")
    assert len(outputs) == 800  # two batch files: 500 + 300
    paired = aligned_outputs.load_palm_teacher("cqa", str(shared_data), "test")
    assert "beaver" in paired[0].raw.split("\n")[0] and paired[0].parsed.label == "wooded area"


@pytest.mark.parametrize("dataset,expected", [("cqa", 80.1), ("svamp", 74.0), ("anli1", 65.6), ("esnli", 73.0)])
def test_data_report_reproduces_manifest_agreement(shared_data, capsys, dataset, expected):
    rc = cli.main(["data-report", "--data_dir", str(shared_data), "--dataset", dataset, "--split", "test", "--json"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert abs(report["teacher_label_accuracy"] - expected) <= 0.1
    assert report["examples"] == report["teacher_records"] > 0
    assert report["parse_failures"] == sum(v for k, v in report["statuses"].items() if k != "ok")
    assert report["mean_rationale_tokens"] > 5


def test_missing_release_file_is_named(shared_data):
    with pytest.raises(sources.DataError, match="anli1_train.json: file not found"):
        sources.load_examples("anli1", str(shared_data), "train")


def test_asdiv_augmentation_does_not_contain_svamp_test_questions(shared_data):
    """svamp_asdiv_* mixtures train on ASDiv; SVAMP was built by varying ASDiv-A problems, so check
    that no SVAMP test question is an ASDiv problem (or a SVAMP train one). Bodies may repeat:
    SVAMP varies the question over an ASDiv body (5 of 200 test problems do)."""
    import re

    def norm(text):
        return re.sub(r"[^a-z0-9 ]+", "", re.sub(r"\s+", " ", text.lower())).strip()

    test = {norm(e.text) for e in sources.load_examples("svamp", str(shared_data), "test")}
    asdiv = {norm(e.text) for e in sources.load_examples("asdiv", str(shared_data), "train")}
    train = {norm(e.text) for e in sources.load_examples("svamp", str(shared_data), "train")}
    assert len(test) == 200 and len(asdiv) > 2000
    assert not test & asdiv and not test & train

"""TFDS source: real TFDS builders (esnli, anli/r1) prepare a small dataset in tmp from raw files we
write (only the network fetch is replaced), and our source reads the same `Example`s as the JSON path."""
import csv
import json
import os
import unittest.mock

import gin
import pytest

from t5x_sbs.data import sources, tfds_source
from t5x_sbs.tasks import registry

import tensorflow_datasets as tfds  # a core dependency: never skip

pytestmark = pytest.mark.shared_data
ROWS = 12


def _json_rows(shared_data, dataset, file_split):
    with open(shared_data / dataset / f"{dataset}_{file_split}.json", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _write_raw(shared_data, raw):
    """The files the builders would download: ANLI's R1 jsonl (context/hypothesis/label e|n|c) and
    e-SNLI's CSVs (Sentence1/Sentence2/gold_label); rows from the shared JSON, some reordered."""
    anli_dir = raw / "anli_v0.1.zip" / "anli_v0.1" / "R1"
    anli_dir.mkdir(parents=True)
    anli = {"train": _json_rows(shared_data, "anli1", "test")[:3], "dev": _json_rows(shared_data, "anli1", "valid")[:ROWS],
            "test": _json_rows(shared_data, "anli1", "test")[:ROWS][::-1]}
    for name, rows in anli.items():
        with open(anli_dir / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps({"uid": r["uid"], "context": r["premise"], "hypothesis": r["hypothesis"],
                                    "label": "enc"[r["label"]]}) + "\n")
    valid = _json_rows(shared_data, "esnli", "valid")
    duplicated = [i for i, r in enumerate(valid) if r["hypothesis"] == "The child is blonde."]
    picked = {"esnli_dev.csv": [valid[i] for i in list(range(ROWS)) + duplicated],
              "esnli_test.csv": _json_rows(shared_data, "esnli", "test")[:ROWS][::-1]}
    picked["esnli_train_1.csv"], picked["esnli_train_2.csv"] = picked["esnli_test.csv"][:2], picked["esnli_test.csv"][2:4]
    for name, rows in picked.items():
        with open(raw / name, "w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, ["pairID", "gold_label", "Sentence1", "Sentence2", "Explanation_1"])
            writer.writeheader()
            for i, r in enumerate(rows):
                writer.writerow({"pairID": f"{name}-{i}", "gold_label": ("entailment", "neutral", "contradiction")[r["label"]],
                                 "Sentence1": r["premise"], "Sentence2": r["hypothesis"],
                                 "Explanation_1": r["explanation_1"]})
    return picked


@pytest.fixture(scope="module")
def tfds_dir(shared_data, tmp_path_factory):
    raw, data_dir = tmp_path_factory.mktemp("raw"), tmp_path_factory.mktemp("tfds")
    picked = _write_raw(shared_data, raw)

    def fetch(urls):  # the network step only: every URL resolves to the file we wrote
        return tfds.core.utils.map_nested(lambda url: os.fspath(raw / os.path.basename(url)), urls)

    with unittest.mock.patch.object(tfds.download.DownloadManager, "download_and_extract", side_effect=fetch):
        for dataset in ("anli1", "esnli"):
            tfds_source.tfds_builder(dataset, str(data_dir)).download_and_prepare(
                download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    return str(data_dir), picked


@pytest.mark.parametrize("dataset,split", [("anli1", "test"), ("anli1", "validation"), ("esnli", "test"),
                                           ("esnli", "validation")])
def test_tfds_rows_are_the_json_examples(shared_data, tfds_dir, dataset, split):
    from_tfds = sources.load_examples(dataset, str(shared_data), split, tfds_data_dir=tfds_dir[0])
    from_json = {e.id: e for e in sources.load_examples(dataset, str(shared_data), split)}
    expected = ROWS + (2 if (dataset, split) == ("esnli", "validation") else 0)
    assert len(from_tfds) == expected and len({e.id for e in from_tfds}) == expected
    for example in from_tfds:
        assert from_json[example.id] == example  # same id, text, input fields and gold label


def test_tfds_train_split_and_task_rows(shared_data, tfds_dir):
    """Train inputs ../shared/data lacks come from TFDS; gin picks the source per dataset."""
    with pytest.raises(sources.DataError, match="esnli_train.json: file not found"):
        sources.load_examples("esnli", str(shared_data), "train")
    assert len(sources.load_examples("esnli", str(shared_data), "train", tfds_data_dir=tfds_dir[0])) == 4
    spec = registry.builtin_spec("esnli", "accuracy")
    gin.clear_config()
    gin.bind_parameter("tasks.config.data_dir.path", str(shared_data))
    gin.bind_parameter("tasks.config.tfds_data_dirs.dirs", {"esnli": tfds_dir[0]})
    try:
        rows = registry._rows(registry.label_targets(spec, "test", "gold"), "label")
        assert len(rows["id"]) == ROWS and rows["inputs"][0].startswith("predict: ")
        # the PaLM replay still aligns: TFDS rows of a split the paper's JSON has share its ids
        teacher = spec.teacher(str(shared_data), "test", spec.load(str(shared_data), "test"))
        palm = sources.palm_outputs_by_id("esnli", str(shared_data), "test")
        assert [o.raw for o in teacher] == [palm[o.example.id] for o in teacher]
        with pytest.raises(sources.DataError, match="esnli_train.json: file not found"):
            spec.teacher(str(shared_data), "train", spec.load(str(shared_data), "train"))
    finally:
        gin.clear_config()


def test_unprepared_tfds_dir_is_named(shared_data, tmp_path):
    with pytest.raises(sources.DataError, match=f"{tmp_path}/anli/r1: no prepared TFDS dataset"):
        sources.load_examples("anli1", str(shared_data), "test", tfds_data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="no TFDS source for 'cqa'"):
        sources.load_examples("cqa", str(shared_data), "test", tfds_data_dir=str(tmp_path))

"""Third-party eitnlp_cot rationales -> teacher stores aligned to our ids, on ../shared/data."""
import json

import pytest

from t5x_sbs import metrics
from t5x_sbs.data import sources
from t5x_sbs.cli import import_rationales
from t5x_sbs.teacher import eitnlp
from t5x_sbs.records import read_records
from t5x_sbs.teacher import store_reading

pytestmark = pytest.mark.shared_data


def _file(shared_data, dataset, name):
    return str(shared_data / dataset / "eitnlp_cot" / name)


def test_svamp_rows_of_our_test_split_are_never_used(shared_data):
    records, report = eitnlp.eitnlp_records(_file(shared_data, "svamp", "SVAMP_gemini_level1_ranked.json"),
                                            "svamp", str(shared_data))
    train_ids = [e.id for e in sources.load_examples("svamp", str(shared_data), "train")]
    assert [r.id for r in records] == train_ids  # one record per train example, in order
    assert (report.rows, report.aligned, report.other_split, report.unaligned) == (700, 564, {"test": 136}, 0)
    assert report.examples_without_row == 236 and report.statuses == {"ok": 564, "failed": 236}
    assert all(r.teacher == "eitnlp:gemini-level1" for r in records)
    ok = [r for r in records if r.status == "ok"]
    bananas = next(r for r in ok if "290 bananas" in r.input["input"])
    assert bananas.label == "145" and bananas.rationale.startswith("Divide the total")
    agree = sum(metrics.equation_equal(r.gold, r.label) for r in ok) / len(ok)
    assert 0.8 < agree < 1.0  # numbers compared with the gold equations by value


def test_cqa_letters_become_choice_text(shared_data):
    records, report = eitnlp.eitnlp_records(_file(shared_data, "cqa", "csqa_llama_level1_ranked.json"),
                                            "cqa", str(shared_data))
    assert report.aligned == 9732 and report.unaligned == 0 and report.examples_without_row == 9
    ok = [r for r in records if r.status == "ok"]
    assert all(r.label in r.input["choices"] for r in ok) and len(ok) > 9600
    assert 0.7 < sum(r.label == r.gold for r in ok) / len(ok) < 1.0
    sammy = next(r for r in ok if r.input["question"].startswith("Sammy wanted to go to where the people were."))
    assert sammy.label == "populated areas" and "The answer is" not in sammy.rationale


def test_unaligned_rows_are_counted_or_fail_strictly(shared_data, tmp_path):
    path = _file(shared_data, "gsm8k", "gsm8k_gemini_level2_ranked.json")
    store = tmp_path / "gsm8k.jsonl"
    report = eitnlp.write_eitnlp_store(path, "gsm8k", str(shared_data), str(store))
    assert report.unaligned == 3 and len(report.unaligned_first) == 3 and report.aligned == 7430
    records = list(read_records(store))  # the written store is a valid TeacherRecord file
    assert len(records) == 7473 and sum(r.status == "ok" for r in records) > 7300
    first_bad = report.unaligned_first[0]
    with pytest.raises(sources.DataError, match=rf"gsm8k_gemini_level2_ranked.json: field '\[{first_bad}\].instruction'"):
        eitnlp.eitnlp_records(path, "gsm8k", str(shared_data), strict=True)
    outputs = store_reading.teacher_from_store(str(store), sources.load_examples("gsm8k", str(shared_data), "train"))
    assert outputs[0].parsed.ok and outputs[0].parsed.label == outputs[0].example.gold == "72"


def test_bad_files_are_named(shared_data, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"instruction": "x", "output": "The answer is 1"}, {"instruction": "y"}]))
    with pytest.raises(sources.DataError, match=r"bad.json: field '\[1\].output': missing"):
        eitnlp.eitnlp_records(str(bad), "svamp", str(shared_data))
    bad.write_text("{not json")
    with pytest.raises(sources.DataError, match="bad.json:1: invalid JSON"):
        eitnlp.eitnlp_records(str(bad), "svamp", str(shared_data))
    with pytest.raises(ValueError, match="eitnlp sets exist for"):
        eitnlp.eitnlp_records(str(bad), "esnli", str(shared_data))
    parser = __import__("argparse").ArgumentParser()
    import_rationales.add_arguments(parser)
    args = parser.parse_args(["--data_dir", str(shared_data), "--dataset", "svamp", "--file", str(bad),
                              "--output", str(tmp_path / "out.jsonl")])
    assert import_rationales.run(args) == 2 and "bad.json" in capsys.readouterr().err

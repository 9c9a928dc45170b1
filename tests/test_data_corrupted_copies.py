"""Modified copies of the real ../shared/data: every fault fails naming file, line/index and field,
and `data-report` exits 2 with one line (never exit 0 with misaligned data)."""
from __future__ import annotations

import json
import shutil

import pytest

from t5x_sbs.cli import main
from t5x_sbs.data import sources
from t5x_sbs.records import InputError, TeacherRecord
from t5x_sbs.teacher import aligned_outputs

pytestmark = pytest.mark.shared_data


@pytest.fixture
def copy(shared_data, tmp_path):
    """copy(dataset) -> a private copy of the dataset's folder (no eitnlp/cos-e extras)."""
    def make(dataset: str):
        shutil.copytree(shared_data / dataset, tmp_path / dataset,
                        ignore=shutil.ignore_patterns("eitnlp_cot", "cos_e_v1.11", "SVAMP.json"))
        sources._cached.cache_clear()
        return tmp_path / dataset
    yield make
    sources._cached.cache_clear()


def _report_fails(capsys, data_dir, dataset, split, *pattern_parts):
    assert main(["data-report", "--data_dir", str(data_dir), "--dataset", dataset, "--split", split]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for part in pattern_parts:
        assert part in err, err
    return err


def test_duplicated_cqa_id_names_both_lines(copy, capsys):
    folder = copy("cqa")
    path = folder / "cqa_test.json"
    lines = path.read_text().splitlines()
    second = json.loads(lines[4])
    second["id"] = json.loads(lines[1])["id"]  # the 'wooded area' question gets another's teacher output
    lines[4] = json.dumps(second)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(sources.DataError) as info:
        sources.load_examples("cqa", str(folder.parent), "test")
    assert (info.value.line, info.value.field) == (5, "id") and "first at line 2" in str(info.value)
    _report_fails(capsys, folder.parent, "cqa", "test", "cqa_test.json:5", "duplicate id")


@pytest.mark.parametrize("fault", ["one_short", "one_extra", "null_entry", "truncated_json", "not_utf8"])
def test_palm_output_faults_name_file_and_index(copy, capsys, fault):
    folder = copy("svamp")
    path = folder / "llm" / "test_CoT_0.json"
    outputs = json.loads(path.read_text())
    expect = {"one_short": ("test_CoT_0.json: field '[199]'", "1 missing"),
              "one_extra": ("test_CoT_0.json: field '[200]'", "more PaLM outputs"),
              "null_entry": ("test_CoT_0.json: field '[7]'", "got NoneType"),
              "truncated_json": ("test_CoT_0.json:1", "invalid JSON"),
              "not_utf8": ("test_CoT_0.json:1", "not UTF-8")}[fault]
    if fault == "one_short":
        path.write_text(json.dumps(outputs[:-1]))
    elif fault == "one_extra":
        path.write_text(json.dumps(outputs + ["So the answer is 3."]))
    elif fault == "null_entry":
        outputs[7] = None
        path.write_text(json.dumps(outputs))
    elif fault == "truncated_json":
        path.write_text(json.dumps(outputs)[:5000])
    else:
        path.write_bytes(json.dumps(outputs).encode()[:100] + b"\xff\xfe" + json.dumps(outputs).encode()[100:])
    with pytest.raises(InputError):
        aligned_outputs.load_palm_teacher("svamp", str(folder.parent), "test")
    _report_fails(capsys, folder.parent, "svamp", "test", *expect)


@pytest.mark.parametrize("fault", ["empty_file", "bad_bytes", "directory"])
def test_input_file_faults_are_named(copy, capsys, fault):
    folder = copy("svamp")
    path = folder / "svamp_test.json"
    if fault == "empty_file":
        path.write_text("")
        expect = ("svamp_test.json", "holds no examples")
    elif fault == "bad_bytes":
        lines = path.read_bytes().split(b"\n")
        lines[2] = lines[2][:10] + b"\xc3\x28" + lines[2][10:]
        path.write_bytes(b"\n".join(lines))
        expect = ("svamp_test.json:3", "not UTF-8")
    else:
        path.unlink()
        path.mkdir()
        expect = ("svamp_test.json", "is a directory")
    _report_fails(capsys, folder.parent, "svamp", "test", *expect)


def _store_from_palm(folder, split="test"):
    """A TeacherRecord store of the real PaLM outputs, as `replay` would write it."""
    return [TeacherRecord(id=o.example.id, dataset="svamp", split=split, input=o.example.input, gold=o.example.gold,
                          rationale=o.parsed.rationale, label=o.parsed.label, status=o.parsed.status,
                          raw=o.raw, teacher="replay:palm", prompt_hash="palm")
            for o in aligned_outputs.load_palm_teacher("svamp", str(folder.parent), split)]


def test_store_record_with_unknown_split_or_id_fails(copy, capsys, tmp_path):
    folder = copy("svamp")
    records = _store_from_palm(folder)
    records[3].split, records[3].id = "tset", "nowhere-3"  # matches no split and no example
    store = tmp_path / "s.jsonl"
    store.write_text("".join(r.to_json() + "\n" for r in records))
    assert main(["data-report", "--data_dir", str(folder.parent), "--dataset", "svamp", "--split", "test",
                 "--teacher_file", str(store)]) == 2
    err = capsys.readouterr().err
    assert "s.jsonl:4: field 'split'" in err and "'tset'" in err
    records[3].split = "test"
    store.write_text("".join(r.to_json() + "\n" for r in records))
    assert main(["data-report", "--data_dir", str(folder.parent), "--dataset", "svamp", "--split", "test",
                 "--teacher_file", str(store)]) == 2
    assert "s.jsonl:4: field 'id': 'nowhere-3' is not an example of the test split" in capsys.readouterr().err


def test_torn_last_store_line_is_counted_by_every_reader(copy, capsys, tmp_path, caplog):
    folder = copy("svamp")
    records = _store_from_palm(folder)
    store = tmp_path / "s.jsonl"
    store.write_text("".join(r.to_json() + "\n" for r in records[:-1]) + records[-1].to_json()[:50])
    assert main(["ledger", str(store), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["records"] == 199 and "s.jsonl:200: torn last line" in captured.err
    with caplog.at_level("WARNING"):
        assert main(["data-report", "--data_dir", str(folder.parent), "--dataset", "svamp", "--split", "test",
                     "--teacher_file", str(store), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["missing_teacher_records"] == 1
    assert "s.jsonl:200 is a torn last line" in caplog.text

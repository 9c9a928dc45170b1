"""Bad input fails loudly, naming file, line and field; nothing is dropped silently."""
import json

import pytest

from t5x_sbs.data import sources
from t5x_sbs.records import RecordError
from t5x_sbs.teacher import store_reading


def _write(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return path


def _anli(tmp_path, rows):
    return _write(tmp_path / "anli1" / "anli1_test.json", [json.dumps(r) if isinstance(r, dict) else r for r in rows])


GOOD = {"uid": "a", "premise": "p", "hypothesis": "h", "label": 0}


@pytest.mark.parametrize("rows,line,field,problem", [
    ([GOOD, "{not json"], 2, None, "invalid JSON"),
    ([GOOD, {"uid": "b", "hypothesis": "h", "label": 1}], 2, "premise", "missing"),
    ([{"uid": "b", "premise": "p", "hypothesis": "h", "label": 7}], 1, "label", "unknown label id 7"),
    ([{"uid": "b", "premise": "p", "hypothesis": "  ", "label": 1}], 1, "hypothesis", "non-empty"),
])
def test_paper_layout_errors_name_file_line_field(tmp_path, rows, line, field, problem):
    path = _anli(tmp_path, rows)
    with pytest.raises(sources.DataError) as info:
        sources.load_examples("anli1", str(tmp_path), "test")
    assert (info.value.path, info.value.line, info.value.field) == (str(path), line, field)
    assert problem in str(info.value) and str(path) in str(info.value)


def test_empty_svamp_target(tmp_path):
    _write(tmp_path / "svamp" / "svamp_test.json", [json.dumps({"input": "q", "label": ""})])
    with pytest.raises(sources.DataError, match=r"svamp_test.json:1: field 'label'"):
        sources.load_examples("svamp", str(tmp_path), "test")


def _record(i, **kw):
    record = {"id": f"x{i}", "input": {"q": "?"}, "rationale": "r", "label": "l", "status": "ok"}
    record.update(kw)
    return json.dumps(record)


def _examples(n):
    from t5x_sbs.records import Example
    return [Example(id=f"x{i}", dataset="d", split="train", text="t", input={}, gold="g") for i in range(n)]


def test_teacher_file_shorter_than_inputs(tmp_path):
    store = _write(tmp_path / "t.jsonl", [_record(0), _record(1)])
    with pytest.raises(sources.DataError, match=r"2 records for 3 inputs; 1 examples have no record"):
        store_reading.teacher_from_store(str(store), _examples(3))
    assert len(store_reading.teacher_from_store(str(store), _examples(3), require_all=False)) == 2


def test_teacher_file_with_unknown_id(tmp_path):
    store = _write(tmp_path / "t.jsonl", [_record(0), _record(9)])
    with pytest.raises(sources.DataError) as info:
        store_reading.teacher_from_store(str(store), _examples(1))
    assert (info.value.line, info.value.field) == (2, "id")


def test_teacher_record_missing_field_and_bad_json(tmp_path):
    store = _write(tmp_path / "t.jsonl", [_record(0), json.dumps({"id": "x1", "input": {}, "label": "l", "status": "ok"})])
    with pytest.raises(RecordError, match=r"t.jsonl:2: field 'rationale': missing"):
        store_reading.teacher_from_store(str(store), _examples(2))
    store = _write(tmp_path / "u.jsonl", [_record(0), "{torn"])
    with pytest.raises(RecordError, match=r"u.jsonl:2: invalid JSON"):
        store_reading.teacher_from_store(str(store), _examples(2))


def test_non_ok_records_keep_their_status(tmp_path):
    store = _write(tmp_path / "t.jsonl", [_record(0), _record(1, status="blocked", label=None, error="safety")])
    outputs = store_reading.teacher_from_store(str(store), _examples(2))
    assert [o.parsed.status for o in outputs] == ["ok", "blocked"] and outputs[1].parsed.label is None

"""Third-party rationales (EIT-NLP `eitnlp_cot` sets) as a teacher store aligned to our ids.

The files (`../shared/data/{cqa,svamp,gsm8k}/eitnlp_cot/*.json`) are JSON lists of
`{instruction, output}`: the question as the teacher saw it and its CoT ending in
"The answer is X". Rows are matched to our examples by their text (whitespace-normalised;
CQA rebuilt as "Q: question Answer choices: A: c1, B: c2, ..."), so a user can train on
Gemini / LLaMA / ChatGPT rationales instead of PaLM's:

    t5x-sbs import-rationales --data_dir ../shared/data --dataset svamp \
        --file ../shared/data/svamp/eitnlp_cot/SVAMP_gemini_level1_ranked.json --output stores/svamp_gemini.jsonl
    # gin: tasks.config.teacher_files.files = {'svamp': 'stores/svamp_gemini.jsonl'}

The store has one `TeacherRecord` per example of the split (default train): `ok` or
`unparseable` for matched rows, `failed` ("no row in <file>") for examples the file lacks.
Rows that match another split (their SVAMP train overlaps our test) are never used; rows that
match nothing are skipped; both are counted in the printed report (`--strict` makes them errors).
SVAMP labels from these files are numbers, not equations: the equation metric compares by value.
"""
from __future__ import annotations

import collections
import dataclasses
import os
import re

from t5x_sbs.data import sources
from t5x_sbs.teacher.parsing import ParsedOutput, parse_gsm8k
from t5x_sbs.records import Example, TeacherRecord
from t5x_sbs.teacher.store import TeacherStore

EITNLP_DATASETS = ("cqa", "svamp", "gsm8k")
_LETTERS = "ABCDE"


def _normalise(text: str) -> str:
    return " ".join(text.split())


def alignment_key(example: Example) -> str:
    """The text an eitnlp `instruction` holds for this example."""
    if example.dataset in ("cqa", "cose"):
        choices = ", ".join(f"{letter}: {c}" for letter, c in zip(_LETTERS, example.input["choices"]))
        return _normalise(f"Q: {example.input['question']} Answer choices: {choices}")
    return _normalise(example.text)


def parse_eitnlp_output(dataset: str, example: Example, output: str) -> ParsedOutput:
    """'... The answer is B' -> CQA's choice text; '... The answer is 145' -> '145' (math)."""
    if dataset != "cqa":
        return parse_gsm8k(output)
    rationale, phrase, answer = output.rpartition("The answer is")
    match = re.match(r"\s*\(?([A-E])\b", answer)
    if not phrase or match is None:
        return ParsedOutput(rationale=None, label=None, status="unparseable",
                            problem="no 'The answer is <A-E>'")
    return ParsedOutput(rationale=rationale.strip(), status="ok",
                        label=example.input["choices"][_LETTERS.index(match.group(1))])


def teacher_name(path: str) -> str:
    """'csqa_gemini_level1_ranked.json' -> 'eitnlp:gemini-level1'."""
    stem = os.path.basename(path).rsplit(".", 1)[0].replace("_ranked", "")
    return "eitnlp:" + "-".join(stem.split("_")[1:]).lower()


@dataclasses.dataclass
class ImportReport:
    file: str
    dataset: str
    split: str
    rows: int = 0
    aligned: int = 0
    other_split: dict[str, int] = dataclasses.field(default_factory=dict)  # rows of our other splits: unused
    unaligned: int = 0                     # rows matching no example of any split: skipped
    unaligned_first: list[int] = dataclasses.field(default_factory=list)  # their row indices
    duplicates: int = 0                    # further rows for an already matched example: skipped
    examples: int = 0
    examples_without_row: int = 0          # written as status 'failed'
    statuses: dict[str, int] = dataclasses.field(default_factory=dict)


def _read_rows(path: str) -> list[dict]:
    if not os.path.isfile(path):
        raise sources.DataError(path, None, None, "file not found" if not os.path.exists(path) else "not a file")
    rows = sources.read_json_file(path)  # names the line of bad JSON or bytes
    if not isinstance(rows, list):
        raise sources.DataError(path, None, None, "expected a JSON list of {instruction, output}")
    for i, row in enumerate(rows):
        for name in ("instruction", "output"):
            if not isinstance(row, dict) or not isinstance(row.get(name), str):
                raise sources.DataError(path, None, f"[{i}].{name}", "missing or not a string")
    return rows


def eitnlp_records(path: str, dataset: str, data_dir: str, split: str = "train",
                   strict: bool = False) -> tuple[list[TeacherRecord], ImportReport]:
    """One TeacherRecord per example of `split` (file order) and the alignment report."""
    if dataset not in EITNLP_DATASETS:
        raise ValueError(f"eitnlp sets exist for {EITNLP_DATASETS}, not {dataset!r}")
    rows = _read_rows(path)
    by_split = {s: sources.load_examples(dataset, data_dir, s) for s in ("train", "test")}
    examples = sources.load_examples(dataset, data_dir, split)
    ours = {alignment_key(e): e for e in examples}
    elsewhere = {alignment_key(e): s for s, exs in by_split.items() if s != split for e in exs}
    report = ImportReport(file=path, dataset=dataset, split=split, rows=len(rows), examples=len(examples))
    matched: dict[str, str] = {}
    for i, row in enumerate(rows):
        key = _normalise(row["instruction"])
        if key in ours:
            if ours[key].id in matched:
                report.duplicates += 1
                continue
            matched[ours[key].id] = row["output"]
        elif key in elsewhere:
            report.other_split[elsewhere[key]] = report.other_split.get(elsewhere[key], 0) + 1
        else:
            if strict:
                raise sources.DataError(path, None, f"[{i}].instruction", f"matches no {dataset} example")
            report.unaligned += 1
            if len(report.unaligned_first) < 5:
                report.unaligned_first.append(i)
    report.aligned = len(matched)
    records = [_record(e, matched.get(e.id), path, split) for e in examples]
    report.examples_without_row = sum(r.status == "failed" for r in records)
    report.statuses = dict(collections.Counter(r.status for r in records))
    return records, report


def _record(example: Example, output: str | None, path: str, split: str) -> TeacherRecord:
    common = dict(id=example.id, dataset=example.dataset, split=split, input=example.input, gold=example.gold,
                  teacher=teacher_name(path), raw=output)
    if output is None:
        return TeacherRecord(rationale=None, label=None, status="failed",
                             error=f"no row in {os.path.basename(path)}", **common)
    parsed = parse_eitnlp_output(example.dataset, example, output)
    return TeacherRecord(rationale=parsed.rationale, label=parsed.label, status=parsed.status,
                         error=parsed.problem, **common)


def write_eitnlp_store(path: str, dataset: str, data_dir: str, output: str, split: str = "train",
                       strict: bool = False) -> ImportReport:
    records, report = eitnlp_records(path, dataset, data_dir, split, strict)
    store = TeacherStore(output)
    with store.writing():  # one writer per store, as for the teacher; atomic rewrite
        tmp = output + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(r.to_json() + "\n" for r in records)
        os.replace(tmp, output)
    return report

"""Readers: every dataset split becomes a list of `records.Example`s.

Sources (all offline):
- the paper's `datasets/` layout: `<ds>/<ds>_<split>.json` (JSON lines) and the stored PaLM
  completions `<ds>/llm/<split>_CoT_<i>.json` (cqa, svamp, anli1, esnli);
- GSM8K's `gsm8k/{train,test}.jsonl`, ASDiv's `asdiv/ASDiv.xml`, CoS-E's explanations.

Splits are named `train`, `validation`, `test`. A dataset without a validation file gets a
deterministic 10% carve-out of train (`split_examples`), chosen by `id_fraction`, the one hash
that also drives data fractions and rationale coverage.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import xml.etree.ElementTree as ET
from typing import Any, Callable, Iterator

from t5x_sbs.data.examples import NLI_SEPARATOR, DataError, nli_example, require_unique_ids, unique_ids  # noqa: F401
from t5x_sbs.data.tfds_source import load_tfds_examples
from t5x_sbs.records import Example, iter_jsonl

SPLITS = ("train", "validation", "test")
# The paper's file names use `valid`.
_FILE_SPLIT = {"train": "train", "validation": "valid", "test": "test"}
VALIDATION_FRACTION = 0.1


class NoPalmOutputs(DataError):
    """A split with no stored PaLM output files at all (not an error for readers that can do without)."""


def id_fraction(example_id: str, salt: str = "") -> float:
    """A stable number in [0, 1) per example id: `id_fraction(i) < f` selects a nested subset
    (12.5% ⊂ 25% ⊂ 50% ⊂ 100%). Different salts give independent choices."""
    digest = hashlib.sha256(f"{salt}\x00{example_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def in_validation_carve_out(example_id: str) -> bool:
    return id_fraction(example_id, salt="validation") < VALIDATION_FRACTION


def canonical_split(split: str) -> str:
    split = {"valid": "validation", "dev": "validation"}.get(split, split)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return split


def read_jsonl(path: str) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line; a bad line raises DataError."""
    if not os.path.exists(path):
        raise DataError(path, None, None, "file not found")
    rows = list(iter_jsonl(path, DataError))
    for line_no, obj in rows:
        if not isinstance(obj, dict):
            raise DataError(path, line_no, None, "expected a JSON object")
    return rows


def _field(obj: dict, name: str, path: str, line: int, kind: type = str) -> Any:
    if name not in obj:
        raise DataError(path, line, name, "missing")
    value = obj[name]
    if not isinstance(value, kind) or (kind is str and not value.strip()):
        raise DataError(path, line, name, f"expected a non-empty {kind.__name__}, got {value!r:.60}")
    return value


def _split_file(data_dir: str, dataset: str, split: str) -> str:
    return os.path.join(data_dir, dataset, f"{dataset}_{_FILE_SPLIT[split]}.json")


def _cqa_example(obj, path, line, split, dataset="cqa") -> Example:
    question = _field(obj, "question", path, line)
    choices = _field(obj, "choices", path, line, list)
    if len(choices) != 5:
        raise DataError(path, line, "choices", f"expected 5 choices, got {len(choices)}")
    letters = "abcde"
    text = question + "\nAnswer Choices:\n" + "\n".join(f"({letters[i]}) {c}" for i, c in enumerate(choices))
    return Example(id=str(_field(obj, "id", path, line)), dataset=dataset, split=split, text=text,
                   input={"question": question, "choices": choices}, gold=_field(obj, "answer", path, line))


def _nli_example(obj, path, line, split, dataset) -> Example:
    premise, hypothesis = _field(obj, "premise", path, line), _field(obj, "hypothesis", path, line)
    return nli_example(premise, hypothesis, obj.get("label"), obj.get("uid"), split, dataset, (path, line))


def _svamp_example(obj, path, line, split, index) -> Example:
    text = _field(obj, "input", path, line)
    return Example(id=f"{split}-{index}", dataset="svamp", split=split, text=text,
                   input={"input": text}, gold=_field(obj, "label", path, line))


def _paper_layout(dataset: str, data_dir: str, split: str) -> list[Example]:
    path = _split_file(data_dir, dataset, split)
    rows = read_jsonl(path)
    if not rows:
        raise DataError(path, None, None, "holds no examples")
    lines = [line for line, _ in rows]
    if dataset == "cqa":
        return require_unique_ids([_cqa_example(obj, path, line, split) for line, obj in rows], path, lines)
    if dataset == "svamp":
        return [_svamp_example(obj, path, line, split, i) for i, (line, obj) in enumerate(rows)]
    examples = [_nli_example(obj, path, line, split, dataset) for line, obj in rows]
    # A source `uid` must be unique; ids hashed from the text pair may repeat (a pair twice).
    with_uid = [i for i, (_, obj) in enumerate(rows) if obj.get("uid")]
    require_unique_ids([examples[i] for i in with_uid], path, [lines[i] for i in with_uid])
    return unique_ids(examples)


def _gsm8k(data_dir: str, split: str) -> list[Example]:
    if split == "validation":
        raise DataError(os.path.join(data_dir, "gsm8k"), None, None, "gsm8k has no validation file")
    path = os.path.join(data_dir, "gsm8k", f"{split}.jsonl")
    examples = []
    for i, (line, obj) in enumerate(read_jsonl(path)):
        question, answer = _field(obj, "question", path, line), _field(obj, "answer", path, line)
        if "####" not in answer:
            raise DataError(path, line, "answer", "no '#### N' final answer")
        gold = answer.rsplit("####", 1)[1].strip().replace(",", "")
        examples.append(Example(id=f"{split}-{i}", dataset="gsm8k", split=split, text=question,
                                input={"question": question, "solution": answer}, gold=gold))
    return examples


def _asdiv(data_dir: str, split: str) -> list[Example]:
    """All ASDiv problems as `train` (the paper uses them only to augment SVAMP's train)."""
    path = os.path.join(data_dir, "asdiv", "ASDiv.xml")
    if split != "train":
        raise DataError(path, None, None, f"asdiv has only a 'train' split (extra SVAMP training data), not {split!r}")
    if not os.path.exists(path):
        raise DataError(path, None, None, "file not found")
    examples = []
    for problem in ET.parse(path).getroot().iter("Problem"):
        pid = problem.get("ID")
        fields = {k: (problem.findtext(k) or "").strip() for k in ("Body", "Question", "Answer", "Formula")}
        for name in ("Body", "Question", "Answer"):
            if not fields[name]:
                raise DataError(path, None, f"{pid}/{name}", "missing or empty")
        examples.append(Example(id=pid, dataset="asdiv", split=split, text=f"{fields['Body']}\n{fields['Question']}",
                                input=fields, gold=fields["Answer"].split(" ")[0]))
    if not examples:
        raise DataError(path, None, None, "holds no <Problem> elements")
    return require_unique_ids(examples, path)


_READERS: dict[str, Callable[[str, str], list[Example]]] = {
    "cqa": functools.partial(_paper_layout, "cqa"),
    "svamp": functools.partial(_paper_layout, "svamp"),
    "anli1": functools.partial(_paper_layout, "anli1"),
    "esnli": functools.partial(_paper_layout, "esnli"),
    "gsm8k": _gsm8k,
    "asdiv": _asdiv,
}
DATASETS = tuple(_READERS) + ("cose",)
# Datasets whose release has a validation file; the others carve 10% out of train.
HAS_VALIDATION = {"anli1", "esnli"}
# Datasets with the paper's stored PaLM outputs (CoS-E shares CQA's); the others need a teacher store.
PALM_DATASETS = ("cqa", "cose", "svamp", "anli1", "esnli")


def load_examples(dataset: str, data_dir: str, split: str, *, tfds_data_dir: str | None = None) -> list[Example]:
    """Every example of a source split, in file order (what the teacher sees: the whole file).

    For datasets without a validation file, `split="validation"` returns the 10% carve-out of
    train; use `split_examples` for the training view that excludes it. With `tfds_data_dir`,
    e-SNLI and ANLI-R1 come from a prepared TFDS dataset there instead (`tfds_source`).
    """
    split = canonical_split(split)
    if tfds_data_dir:
        return list(_cached_tfds(dataset, os.fspath(tfds_data_dir), split))
    if dataset == "cose":
        return _cose(data_dir, split)
    if dataset not in _READERS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {sorted(DATASETS)}")
    if split == "validation" and dataset not in HAS_VALIDATION:
        return [e for e in _cached(dataset, data_dir, "train") if in_validation_carve_out(e.id)]
    return list(_cached(dataset, data_dir, split))


@functools.lru_cache(maxsize=8)
def _cached_tfds(dataset: str, tfds_data_dir: str, split: str) -> tuple[Example, ...]:
    return tuple(load_tfds_examples(dataset, tfds_data_dir, split))


@functools.lru_cache(maxsize=32)
def _cached(dataset: str, data_dir: str, split: str) -> tuple[Example, ...]:
    return tuple(_READERS[dataset](os.fspath(data_dir), split))


def split_examples(dataset: str, data_dir: str, split: str, *, tfds_data_dir: str | None = None) -> list[Example]:
    """The examples a task trains/evaluates on: train minus the validation carve-out when the
    dataset has no validation file; otherwise the same as `load_examples`."""
    split = canonical_split(split)
    examples = load_examples(dataset, data_dir, split, tfds_data_dir=tfds_data_dir)
    if split == "train" and dataset not in HAS_VALIDATION:
        examples = [e for e in examples if not in_validation_carve_out(e.id)]
    return examples


def _cose(data_dir: str, split: str) -> list[Example]:
    """CQA inputs with the CoS-E v1.11 human explanation in `input['cose_explanation']`."""
    if split == "validation":
        return [e for e in _cose(data_dir, "train") if in_validation_carve_out(e.id)]
    path = os.path.join(data_dir, "cqa", "cos_e_v1.11", f"cose_{'train' if split == 'train' else 'dev'}_v1.11.jsonl")
    explanations, first_line = {}, {}
    for line, obj in read_jsonl(path):
        explanation = _field(obj, "explanation", path, line, dict)
        example_id = str(_field(obj, "id", path, line))
        if example_id in first_line:
            raise DataError(path, line, "id", f"duplicate id {example_id!r} (first at line {first_line[example_id]})")
        first_line[example_id] = line
        explanations[example_id] = _field(explanation, "open-ended", path, line)
    examples = []
    for e in load_examples("cqa", data_dir, split):
        if e.id not in explanations:
            raise DataError(path, None, "id", f"no CoS-E explanation for CQA example {e.id}")
        examples.append(dataclasses.replace(e, dataset="cose", input={**e.input, "cose_explanation": explanations[e.id]}))
    return examples


def read_text_documents(path: str, jsonl_field: str) -> Iterator[tuple[int, str]]:
    """(line number, document) of a text or JSONL file; a bad JSONL line raises DataError."""
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            if not path.endswith(".jsonl"):
                yield line_no, line.rstrip("\n")
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(path, line_no, None, f"not JSON: {e.msg}") from None
            text = obj.get(jsonl_field) if isinstance(obj, dict) else None
            if not isinstance(text, str):
                raise DataError(path, line_no, jsonl_field, "missing or not a string "
                                        "(set tasks.pretrain.text_files.jsonl_field)")
            if text.strip():
                yield line_no, text


# --- the paper's stored PaLM outputs, raw (parsed and aligned: teacher/aligned_outputs.py) ---------------------------------------

def palm_output_files(dataset: str, data_dir: str, split: str) -> list[str]:
    """`<ds>/llm/<split>_CoT_<i>.json` in batch order (i = 0, 1, ...)."""
    split = _FILE_SPLIT[canonical_split(split)]
    llm_dir = os.path.join(data_dir, dataset, "llm")
    files = []
    while os.path.exists(os.path.join(llm_dir, f"{split}_CoT_{len(files)}.json")):
        files.append(os.path.join(llm_dir, f"{split}_CoT_{len(files)}.json"))
    if not files:
        raise NoPalmOutputs(os.path.join(llm_dir, f"{split}_CoT_0.json"), None, None, "no stored PaLM outputs")
    return files


def load_palm_outputs(dataset: str, data_dir: str, split: str) -> list[str]:
    """The raw PaLM completions of a file split, one per example, in example order.

    For a carved-out validation split (cqa, svamp) the outputs of train are aligned to the
    examples by position first; use `palm_outputs_by_id` for any split.
    """
    outputs: list[str] = []
    for path in palm_output_files(dataset, data_dir, split):
        batch = read_json_file(path)
        if not isinstance(batch, list):
            raise DataError(path, None, None, f"expected a JSON list of completions, got {type(batch).__name__}")
        for i, raw in enumerate(batch):
            if not isinstance(raw, str):
                raise DataError(path, None, f"[{i}]", f"expected a string completion, got {type(raw).__name__}")
        outputs.extend(batch)
    return outputs


def read_json_file(path: str) -> Any:
    """One JSON document; bad encoding or JSON raises DataError naming the file and line."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise DataError(path, data.count(b"\n", 0, e.start) + 1, None,
                        f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise DataError(path, e.lineno, None, f"invalid JSON ({e.msg} at column {e.colno})") from None


def _misaligned(files: list[str], inputs: int, dataset: str, split: str) -> DataError:
    """Names the file and index where the PaLM output lists stop matching the inputs."""
    offset, count = 0, 0
    for path in files:
        count = len(read_json_file(path))
        if offset + count > inputs:
            return DataError(path, None, f"[{inputs - offset}]", f"more PaLM outputs than the {inputs} {dataset} "
                             f"{split} examples from this entry on: the lists must match the inputs one for one")
        offset += count
    return DataError(files[-1], None, f"[{count}]", f"{offset} PaLM outputs in {len(files)} files for {inputs} "
                     f"{dataset} {split} examples: {inputs - offset} missing; the lists must match the inputs")


def palm_outputs_by_id(dataset: str, data_dir: str, split: str) -> dict[str, str]:
    """{example id: raw PaLM completion} for a split, checking that counts match the inputs."""
    split = canonical_split(split)
    file_split = split if (split != "validation" or dataset in HAS_VALIDATION) else "train"
    examples = load_examples(dataset, data_dir, file_split)
    source = "cqa" if dataset == "cose" else dataset  # CoS-E shares CQA's inputs and PaLM outputs
    outputs = load_palm_outputs(source, data_dir, file_split)
    if len(outputs) != len(examples):
        raise _misaligned(palm_output_files(source, data_dir, file_split), len(examples), dataset, file_split)
    wanted = {e.id for e in load_examples(dataset, data_dir, split)}
    return {e.id: raw for e, raw in zip(examples, outputs) if e.id in wanted}


def canonical_split_or_none(split: str) -> str | None:
    try:
        return canonical_split(split)
    except ValueError:
        return None

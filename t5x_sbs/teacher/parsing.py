"""The paper's rules for turning a teacher's raw completion into (rationale, label).

Each rule follows the original `data_utils.py` `_parse_llm_output` of its dataset: cut PaLM's
hallucinated few-shot continuation, split on the dataset's answer phrase. Where the original
code would silently produce a blank label (a bare `except`), we return status `unparseable`
and keep the raw text, so nothing is lost and the reports can count it.
"""
from __future__ import annotations

import dataclasses
import re

from t5x_sbs.names import NLI_LABELS
from t5x_sbs.records import Example


@dataclasses.dataclass(frozen=True)
class ParsedOutput:
    rationale: str | None
    label: str | None
    status: str          # "ok" or "unparseable" (names.STATUSES)
    problem: str | None = None  # why it did not parse

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _fail(problem: str, rationale: str | None = None) -> ParsedOutput:
    return ParsedOutput(rationale=rationale, label=None, status="unparseable", problem=problem)


def _ok(rationale: str, label: str) -> ParsedOutput:
    if not label:
        return _fail("empty label", rationale)
    return ParsedOutput(rationale=rationale, label=label, status="ok")


def _split_once(text: str, phrase: str) -> tuple[str, str] | None:
    parts = text.split(phrase)
    return (parts[0], parts[1]) if len(parts) == 2 else None


def parse_cqa(raw: str) -> ParsedOutput:
    """'... So the answer is (c) wooded area.' -> label 'wooded area'."""
    parts = _split_once(raw.split("Q:")[0].rstrip(), "So the answer is")
    if parts is None:
        return _fail("expected exactly one 'So the answer is'")
    rationale, answer = parts[0].rstrip(), parts[1]
    pieces = re.split(r"\(.\)", answer)
    if len(pieces) < 2:
        return _fail("no '(x)' choice marker after the answer phrase", rationale)
    label = pieces[1].strip()
    return _ok(rationale, label[:-1] if label.endswith(".") else label)


def parse_math(raw: str) -> ParsedOutput:
    """SVAMP/ASDiv: '... The answer is (10 * 45).' -> label '(10 * 45)' (the parenthesised part)."""
    parts = _split_once(raw.split("Q:")[0].rstrip(), "The answer is")
    if parts is None:
        return _fail("expected exactly one 'The answer is'")
    rationale = parts[0].rstrip()
    match = re.search(r"\(.*\)", parts[1])
    if match is None:
        return _fail("no parenthesised expression after the answer phrase", rationale)
    return _ok(rationale, match.group(0))


def parse_anli(raw: str) -> ParsedOutput:
    """'... So the answer is contradiction.\\n\\nPremise: ...' -> label 'contradiction'."""
    parts = _split_once(raw.split("Premise:")[0].rstrip(), "So the answer is")
    if parts is None:
        return _fail("expected exactly one 'So the answer is'")
    rationale, label = parts[0].rstrip(), parts[1].strip()
    return _nli_label(rationale, label[:-1] if label.endswith(".") else label)


def parse_esnli(raw: str) -> ParsedOutput:
    """'rationale\\nAnswer: neutral\\n\\nPremise: ...' -> label 'neutral'."""
    rationale = raw.split("Answer:")[0].rstrip()
    pieces = raw.split("Answer: ")
    if len(pieces) < 2:
        return _fail("no 'Answer: ' line", rationale)
    return _nli_label(rationale, pieces[1].split("Premise")[0].rstrip())


def _nli_label(rationale: str, label: str) -> ParsedOutput:
    if label not in NLI_LABELS:
        return _fail(f"label {label[:40]!r} is not one of {NLI_LABELS}", rationale)
    return _ok(rationale, label)


def parse_gsm8k(raw: str) -> ParsedOutput:
    """'... The answer is 720' (or '#### 720') -> label '720' (commas dropped)."""
    text = raw.split("\nQ:")[0].rstrip()
    for phrase in ("The answer is", "####"):
        parts = text.rsplit(phrase, 1)
        if len(parts) == 2:
            match = re.search(r"-?\d[\d,]*(?:\.\d+)?", parts[1])
            if match is None:
                return _fail(f"no number after {phrase!r}", parts[0].rstrip())
            return _ok(parts[0].rstrip(), match.group(0).replace(",", ""))
    return _fail("no 'The answer is' or '####'")


PARSERS = {
    "cqa": parse_cqa,
    "cose": parse_cqa,
    "svamp": parse_math,
    "asdiv": parse_math,
    "anli1": parse_anli,
    "esnli": parse_esnli,
    "gsm8k": parse_gsm8k,
    "arith": parse_gsm8k,  # the built-in task answers like GSM8K: "... The answer is 14."
}


def parse_teacher_output(dataset: str, raw: str | None) -> ParsedOutput:
    """The dataset's rule applied to one raw completion; never raises on bad text."""
    if dataset not in PARSERS:
        raise ValueError(f"no teacher-output parser for dataset {dataset!r}; known: {sorted(PARSERS)}")
    if not isinstance(raw, str) or not raw.strip():
        return _fail("empty teacher output")
    return PARSERS[dataset](raw)


@dataclasses.dataclass(frozen=True)
class TeacherOutput:
    """A parsed stored teacher output aligned to its example."""

    example: Example
    raw: str
    parsed: ParsedOutput   # the main answer: its label row and rationale row
    sample_labels: tuple[str, ...] = ()  # labels of every ok sample (agreement statistics)
    extra: tuple[ParsedOutput, ...] = ()  # more usable samples: extra rationale rows ...
    extra_labels: bool = False            # ... and extra label rows too (samples mode 'all')

    def rationales(self) -> list[str]:
        """Every usable rationale of the example, the main one first."""
        return [p.rationale for p in (self.parsed, *self.extra) if p.ok and (p.rationale or "").strip()]

    def labels(self) -> list[str]:
        """Every label row of the example, the main one first."""
        if not self.parsed.ok:
            return []
        return [self.parsed.label] + ([p.label for p in self.extra if p.ok] if self.extra_labels else [])

"""Prompt templates (data in `prompts/<dataset>.json`) -> prompt text, with a content hash.

A template file holds, per dataset: the query template (how one example is asked), the
answer template (how a demonstration's rationale and label are written, i.e. the format
`t5x_sbs.teacher.parsing` expects), stop sequences that cut the hallucinated continuation, and
two styles: `few_shot` (~10 chain-of-thought demonstrations, Wei et al. style) and
`zero_shot` (an instruction only; optionally JSON through the SDK's response schema).

A prompt file (`--prompt FILE`, e.g. the winner `t5x-sbs optimize-prompt` writes) has the
same schema with one style; `resolve_prompt` takes either a style name or such a file.

`PromptTemplate.hash` covers everything that shapes the request, so a changed prompt gives
a new key in the store and never mixes silently with old results.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from typing import Any

from t5x_sbs.records import Example

PROMPT_DIR = os.path.join(os.path.dirname(__file__), "prompts")
STYLES = ("few_shot", "zero_shot")
# The SDK's response schema for zero-shot JSON answers.
JSON_SCHEMA = {
    "type": "OBJECT",
    "properties": {"rationale": {"type": "STRING"}, "label": {"type": "STRING"}},
    "required": ["rationale", "label"],
    "propertyOrdering": ["rationale", "label"],
}


class PromptError(ValueError):
    """A bad template file or an example missing a field the template needs."""


@dataclasses.dataclass(frozen=True)
class PromptTemplate:
    dataset: str
    style: str
    instruction: str
    demonstrations: tuple[dict[str, Any], ...]
    query_template: str
    answer_template: str
    separator: str
    stop_sequences: tuple[str, ...]
    json_output: bool = False
    gold_format: str = "plain"     # "choice_letter": CQA gold 'x' is written as '(c) x'

    @functools.cached_property
    def hash(self) -> str:
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]

    def _query(self, fields: dict[str, Any], where: str) -> str:
        try:
            return self.query_template.format(**fields)
        except KeyError as e:
            raise PromptError(f"{where}: the {self.dataset} prompt needs field {e.args[0]!r}; "
                              f"have {sorted(fields)}") from None

    def query(self, example: Example) -> str:
        """How one example is asked (no instruction, no demonstrations)."""
        return self._query({"text": example.text, **example.input}, f"example {example.id}")

    def answer_text(self, rationale: str, label: str) -> str:
        """A rationale and label written the way the parser reads them back."""
        return self.answer_template.format(rationale=rationale.strip(), label=label.strip())

    def render(self, example: Example) -> str:
        """The full prompt for one example (instruction, demonstrations, query)."""
        parts = []
        for i, demo in enumerate(self.demonstrations):
            query = self._query(demo, f"prompts/{self.dataset}.json demonstration {i}")
            parts.append(query + self.answer_text(demo["rationale"], demo["label"]))
        parts.append(self.query(example))
        return self.instruction + self.separator.join(parts)

    def gold_answer(self, example: Example) -> str | None:
        """The gold label in the answer format (what feedback names as correct)."""
        if example.gold is None:
            return None
        choices = example.input.get("choices")
        if self.gold_format == "choice_letter" and isinstance(choices, list) and example.gold in choices:
            return f"({'abcdefgh'[choices.index(example.gold)]}) {example.gold}"
        return example.gold

    def feedback_prompt(self, example: Example, previous_prompt: str, previous_answer: str) -> str:
        """Re-ask after a wrong label: the old exchange, the correct answer, the same question."""
        gold = self.gold_answer(example)
        note = (f"\n\nThe answer above is wrong: the correct answer is {gold}. Write a new rationale that "
                f"reasons step by step to the correct answer, ending in the same answer format.\n\n")
        return previous_prompt + previous_answer.rstrip() + note + self.query(example)


@functools.lru_cache(maxsize=None)
def _template_files() -> dict[str, str]:
    """dataset name -> template file (a file may serve several datasets, e.g. svamp+asdiv)."""
    files = {}
    for name in sorted(os.listdir(PROMPT_DIR)):
        if name.endswith(".json"):
            path = os.path.join(PROMPT_DIR, name)
            for dataset in _read(path).get("datasets", [name[:-5]]):
                files[dataset] = path
    return files


def _read_file(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise PromptError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None


_read = functools.lru_cache(maxsize=None)(_read_file)  # the built-in templates never change


def available_datasets() -> list[str]:
    return sorted(_template_files())


def load_prompt(dataset: str, style: str, json_output: bool = False) -> PromptTemplate:
    """The template for a dataset and style; JSON output is a zero-shot option."""
    if style not in STYLES:
        raise PromptError(f"unknown prompt style {style!r}; expected one of {STYLES}")
    path = _template_files().get(dataset)
    if path is None:
        raise PromptError(f"no prompt template for dataset {dataset!r}; have {available_datasets()}")
    return template_from_spec(_read(path), path, dataset, style, json_output)


def load_prompt_file(path: str, dataset: str, json_output: bool = False) -> PromptTemplate:
    """A prompt file written by `t5x-sbs optimize-prompt` (or by hand): the schema of
    `prompts/<dataset>.json` holding one style; its hash is that of the same template built
    in memory, so the records it makes key like those the optimiser scored."""
    if not os.path.isfile(path):
        raise PromptError(f"--prompt {path}: no such prompt file (or a style: {', '.join(STYLES)})")
    spec = _read_file(path)  # not cached: an optimiser may rewrite it
    if dataset not in spec.get("datasets", [spec.get("dataset")]):
        raise PromptError(f"{path}: field 'datasets' does not name dataset {dataset!r}")
    styles = [s for s in STYLES if s in spec]
    if len(styles) != 1:
        raise PromptError(f"{path}: expected exactly one of the fields {STYLES}, found {styles}")
    return template_from_spec(spec, path, dataset, styles[0], json_output)


def resolve_prompt(dataset: str, prompt: str, json_output: bool = False) -> PromptTemplate:
    """`--prompt`: a style name (the dataset's built-in template) or a prompt file path."""
    if prompt in STYLES:
        return load_prompt(dataset, prompt, json_output)
    return load_prompt_file(prompt, dataset, json_output)


def template_from_spec(spec: dict[str, Any], path: str, dataset: str, style: str,
                       json_output: bool = False) -> PromptTemplate:
    """One style of a template file's contents; errors name the file and field."""
    if json_output and style != "zero_shot":
        raise PromptError("JSON output (response schema) is a zero-shot option")
    try:
        part = spec[style]
        demos = tuple(part.get("demonstrations", ())) if style == "few_shot" else ()
        for i, demo in enumerate(demos):
            for field in ("rationale", "label"):
                if not isinstance(demo.get(field), str) or not demo[field].strip():
                    raise PromptError(f"{path}: {style} demonstration {i}: field {field!r} missing or empty")
        return PromptTemplate(
            dataset=dataset, style=style,
            instruction=part["json_instruction" if json_output else "instruction"],
            demonstrations=demos, query_template=spec["query_template"],
            answer_template=spec["answer_template"], separator=part.get("separator", "\n\n"),
            stop_sequences=tuple(spec.get("stop_sequences", ())) if not json_output else (),
            json_output=json_output, gold_format=spec.get("gold_format", "plain"))
    except KeyError as e:
        raise PromptError(f"{path}: field {e.args[0]!r} missing") from None


def template_spec(template: PromptTemplate, **extra: Any) -> dict[str, Any]:
    """The file contents `load_prompt_file` turns back into this (text, zero-shot) template."""
    if template.style != "zero_shot" or template.json_output:
        raise PromptError("only zero-shot text templates are written as prompt files")
    return {"dataset": template.dataset, "datasets": [template.dataset],
            "query_template": template.query_template, "answer_template": template.answer_template,
            "stop_sequences": list(template.stop_sequences), "gold_format": template.gold_format,
            "zero_shot": {"instruction": template.instruction, "separator": template.separator}, **extra}

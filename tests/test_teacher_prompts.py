"""Prompt templates: they load, their demonstrations parse back, their hash tracks content."""
from __future__ import annotations

import dataclasses

import pytest

from t5x_sbs.teacher.parsing import parse_teacher_output
from t5x_sbs.records import Example
from t5x_sbs.teacher import prompting
from t5x_sbs.teacher.backends import parse_spec
from t5x_sbs.teacher.feedback import cap_rationale, label_agrees

PAPER_DATASETS = ("cqa", "esnli", "anli1", "svamp", "asdiv", "gsm8k")


def _example(dataset: str) -> Example:
    fields = {"premise": "A dog runs.", "hypothesis": "An animal moves.", "input": "1 + 1?", "question": "q?",
              "choices": ["a", "b", "c", "d", "e"]}
    return Example(id="x1", dataset=dataset, split="train", text="What is QTEXT?", input=fields, gold="b")


@pytest.mark.parametrize("dataset", PAPER_DATASETS)
def test_every_demonstration_parses_back_to_its_label(dataset):
    template = prompting.load_prompt(dataset, "few_shot")
    assert len(template.demonstrations) >= 8
    for demo in template.demonstrations:
        parsed = parse_teacher_output(dataset, template.answer_text(demo["rationale"], demo["label"]))
        assert parsed.ok, (demo, parsed)
        assert parsed.rationale.strip() == demo["rationale"]
        expected = demo["label"].split(") ", 1)[1] if dataset == "cqa" else demo["label"]
        assert parsed.label == expected


@pytest.mark.parametrize("dataset", PAPER_DATASETS)
def test_styles_render_and_zero_shot_is_much_shorter(dataset):
    example = _example(dataset)
    few = prompting.load_prompt(dataset, "few_shot").render(example)
    zero = prompting.load_prompt(dataset, "zero_shot").render(example)
    json_zero = prompting.load_prompt(dataset, "zero_shot", json_output=True)
    assert few.endswith(zero.split("\n\n")[-1])  # the same query closes both
    assert len(few.split()) >= 4 * len(zero.split())
    assert json_zero.json_output and json_zero.stop_sequences == ()
    assert len({prompting.load_prompt(dataset, "few_shot").hash, json_zero.hash,
                prompting.load_prompt(dataset, "zero_shot").hash}) == 3


def test_hash_changes_with_any_prompt_change():
    template = prompting.load_prompt("cqa", "few_shot")
    assert template.hash == prompting.load_prompt("cqa", "few_shot").hash
    edited = dataclasses.replace(template, demonstrations=template.demonstrations[:-1])
    reworded = dataclasses.replace(template, query_template="Question: {text}\nA:")
    assert len({template.hash, edited.hash, reworded.hash}) == 3


def test_missing_field_and_unknown_dataset_are_clear_errors():
    bare = Example(id="e7", dataset="esnli", split="train", text="t", input={}, gold=None)
    with pytest.raises(prompting.PromptError, match="e7.*'premise'"):
        prompting.load_prompt("esnli", "few_shot").render(bare)
    with pytest.raises(prompting.PromptError, match="no prompt template for dataset 'nope'"):
        prompting.load_prompt("nope", "few_shot")
    with pytest.raises(prompting.PromptError, match="zero-shot option"):
        prompting.load_prompt("cqa", "few_shot", json_output=True)


def test_feedback_prompt_names_gold_in_answer_format():
    template = prompting.load_prompt("cqa", "few_shot")
    example = _example("cqa")
    prompt = template.render(example)
    again = template.feedback_prompt(example, prompt, " Wrong. So the answer is (a) a.")
    assert again.startswith(prompt) and "the correct answer is (b) b." in again
    assert again.endswith(prompt.split("\n\n")[-1])


def test_label_agreement_and_rationale_cap():
    assert label_agrees("svamp", "( 84.0 / 2.0 )", "(84 / 2)")
    assert not label_agrees("svamp", "( 84.0 / 2.0 )", "(84 - 2)")
    assert label_agrees("gsm8k", "1,234", "1234") and label_agrees("cqa", "Wooded area", "wooded area.")
    assert label_agrees("cqa", None, "x") is None
    text, cut = cap_rationale("One two. Three four five. Six seven eight nine.", 30)
    assert (text, cut) == ("One two. Three four five.", True)
    assert cap_rationale("short.", 30) == ("short.", False)


def test_teacher_spec_parsing():
    assert parse_spec("gemini:gemini-2.5-flash") == ("gemini", "gemini-2.5-flash", {})
    assert parse_spec("scripted:arith,error_rate=0.2") == ("scripted", "arith", {"error_rate": "0.2"})
    for bad in ("gemini", ":x", "scripted:arith,oops"):
        with pytest.raises(ValueError, match="--teacher"):
            parse_spec(bad)


def test_prompt_file_round_trips_with_the_same_hash(tmp_path):
    import json
    base = prompting.load_prompt("arith", "zero_shot")
    edited = dataclasses.replace(base, instruction="Think step by step. End with \"The answer is N.\"\n\n")
    path = tmp_path / "prompt.json"
    path.write_text(json.dumps(prompting.template_spec(edited, optimized={"note": "ignored"})))
    loaded = prompting.resolve_prompt("arith", str(path))
    assert loaded == edited and loaded.hash == edited.hash != base.hash
    assert prompting.resolve_prompt("arith", "zero_shot") == base
    path.write_text(json.dumps(prompting.template_spec(base)))   # rewritten: read again, not cached
    assert prompting.resolve_prompt("arith", str(path)).hash == base.hash


def test_bad_prompt_files_name_file_and_field(tmp_path):
    import json
    spec = prompting.template_spec(prompting.load_prompt("arith", "zero_shot"))
    cases = {"other.json": ({**spec, "datasets": ["cqa"]}, "'datasets' does not name dataset 'arith'"),
             "two.json": ({**spec, "few_shot": {"instruction": ""}}, "exactly one of the fields"),
             "noquery.json": ({k: v for k, v in spec.items() if k != "query_template"}, "'query_template' missing")}
    for name, (content, message) in cases.items():
        (tmp_path / name).write_text(json.dumps(content))
        with pytest.raises(prompting.PromptError, match=rf"{name}.*{message}"):
            prompting.resolve_prompt("arith", str(tmp_path / name))
    (tmp_path / "broken.json").write_text('{\n"dataset": "arith",\n oops}')
    with pytest.raises(prompting.PromptError, match=r"broken\.json:3: invalid JSON"):
        prompting.resolve_prompt("arith", str(tmp_path / "broken.json"))
    with pytest.raises(prompting.PromptError, match="no such prompt file"):
        prompting.resolve_prompt("arith", "fewshot")
    with pytest.raises(prompting.PromptError, match="only zero-shot text"):
        prompting.template_spec(prompting.load_prompt("arith", "few_shot"))

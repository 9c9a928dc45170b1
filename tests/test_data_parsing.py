"""The paper's parsing rules, with explicit statuses for what does not parse."""
import pytest

from t5x_sbs.teacher.parsing import parse_teacher_output


@pytest.mark.parametrize("dataset,raw,rationale,label", [
    ("cqa", "Beavers need wood. So the answer is (c) wooded area.\n\nQ: next question", "Beavers need wood.", "wooded area"),
    ("svamp", "10 * 45 is 450. The answer is (10 * 45).\n\nQ: There are 15 trees", "10 * 45 is 450.", "(10 * 45)"),
    ("anli1", "London is in Europe. So the answer is entailment.\n\nPremise: x", "London is in Europe.", "entailment"),
    ("esnli", "Not all churches have cracks.\nAnswer: neutral\n\nPremise: a", "Not all churches have cracks.", "neutral"),
    ("gsm8k", "48/2 = 24 and 48+24 = 72. The answer is 1,072", "48/2 = 24 and 48+24 = 72.", "1072"),
])
def test_rules_cut_continuation_and_split_on_answer_phrase(dataset, raw, rationale, label):
    parsed = parse_teacher_output(dataset, raw)
    assert (parsed.rationale, parsed.label, parsed.status) == (rationale, label, "ok")


@pytest.mark.parametrize("dataset,raw", [
    ("cqa", "I am not sure.\n\nQ: x"),                         # no answer phrase
    ("cqa", "So the answer is wooded area."),                  # no (x) marker
    ("svamp", "The answer is 450."),                           # no parenthesised expression
    ("svamp", "The answer is (1). The answer is (2)."),        # ambiguous
    ("anli1", "So the answer is maybe."),                      # not a class
    ("esnli", "no answer line at all"),
    ("esnli", "r\nAnswer: entailment\n\nPre"),                 # truncated continuation glued to label
    ("gsm8k", "I cannot solve this"),
    ("cqa", ""),
    ("svamp", None),
])
def test_unparseable_outputs_get_a_status_never_a_blank_label(dataset, raw):
    parsed = parse_teacher_output(dataset, raw)
    assert parsed.status == "unparseable" and parsed.label is None and parsed.problem


def test_unknown_dataset_is_an_error():
    with pytest.raises(ValueError, match="no teacher-output parser"):
        parse_teacher_output("imagenet", "x")

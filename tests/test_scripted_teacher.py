"""The scripted teacher: deterministic, seeded error rate, wrong answers with consistent rationales;
sampling, feedback repair and the instruction simulation (the optimiser's offline target)."""
import asyncio
import collections
import hashlib

import pytest

from t5x_sbs.data import arith
from t5x_sbs.records import Example
from t5x_sbs.teacher import optimize, prompting, scripted
from t5x_sbs.teacher.backends import BackendContext, TeacherRequest, make_backend
from t5x_sbs.teacher.runner import RunOptions, Runner
from t5x_sbs.teacher.store import TeacherStore


def _examples(n=600, seed=0):
    problems = arith.generate(seed=seed, sizes={"train": n})["train"]
    return [Example(p.id, "arith", "train", p.question, {"question": p.question}, p.answer) for p in problems]


def _ask(backend, examples, sample=0, prompt=lambda e: "prompt " + e.text):
    async def go():
        return [await backend.generate(TeacherRequest(e, prompt(e), sample)) for e in examples]
    return asyncio.run(go())


def _context(**options):
    return BackendContext(dataset="arith", data_dir="", split="train", options=options)


def test_default_error_rate_and_consistent_wrong_rationales():
    examples = _examples()
    backend = make_backend("scripted:arith", _context())
    responses = _ask(backend, examples)
    wrong = [r for r, e in zip(responses, examples) if r.label != e.gold]
    assert 0.15 <= len(wrong) / len(examples) <= 0.25           # default ~20%
    for r, e in zip(responses, examples):
        assert r.status is None and r.rationale and r.label
        assert arith.chain_is_consistent(r.rationale, r.label), r   # right or wrong, it adds up
        assert r.extra["scripted_slip"] == (r.label != e.gold)
        assert min(c for *_, c in arith.parse_chain(r.rationale)) >= 0
        assert r.usage["total"] == r.usage["prompt"] + r.usage["candidates"] > 0
    # the wrong ones differ from the gold chain in exactly one step's operand/operator
    for r, e in zip(responses, examples):
        if r.label != e.gold:
            gold = arith.parse_chain(arith.Problem(e.id, "train", e.text, *arith.parse_question(e.text)).rationale)
            mine = arith.parse_chain(r.rationale)
            assert len(mine) == len(gold)
            assert sum((g[1], g[2]) != (m[1], m[2]) for g, m in zip(gold, mine)) == 1


def test_deterministic_and_seeded():
    examples = _examples(200)
    a = _ask(make_backend("scripted:arith,error_rate=0.5", _context()), examples)
    b = _ask(make_backend("scripted:arith,error_rate=0.5", _context()), examples)
    c = _ask(make_backend("scripted:arith,error_rate=0.5,seed=1", _context()), examples)
    assert [(r.rationale, r.label) for r in a] == [(r.rationale, r.label) for r in b]
    assert [r.label for r in a] != [r.label for r in c]


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_error_rate_extremes(rate):
    examples = _examples(100)
    responses = _ask(make_backend(f"scripted:arith,error_rate={rate}", _context()), examples)
    n_wrong = sum(r.label != e.gold for r, e in zip(responses, examples))
    assert n_wrong == (0 if rate == 0.0 else len(examples))


def test_unreadable_example_fails_without_raising():
    backend = make_backend("scripted:arith", _context())
    odd = Example("x-1", "arith", "train", "What is love?", {"question": "What is love?"}, None)
    (response,) = _ask(backend, [odd])
    assert response.status == "failed" and "x-1" in response.error


@pytest.mark.parametrize("spec, message", [
    ("scripted:poetry", "unknown scripted teacher"),
    ("scripted:arith,top_k=1", "unknown option"),
    ("scripted:arith,temperature=-1", "not in"),
    ("scripted:arith,repair=2", "not in"),
    ("scripted:arith,error_rate=abc", "bad option value"),
    ("scripted:arith,error_rate=1.5", "not in"),
])
def test_bad_specs_fail_clearly(spec, message):
    with pytest.raises(ValueError, match=message):
        make_backend(spec, _context())


def test_through_the_rationales_cli_store_and_ledger(tmp_path, capsys):
    """The scripted teacher goes through the same runner, store and ledger as Gemini; a rerun
    sends no request for finished examples and leaves the store unchanged."""
    import json

    from t5x_sbs import cli
    from t5x_sbs.records import read_records

    arith.write_splits(tmp_path / "data", seed=0, sizes={"train": 300, "validation": 10, "test": 10})
    store = tmp_path / "store.jsonl"
    argv = ["rationales", "--dataset", "arith", "--data_dir", str(tmp_path / "data"), "--split", "train",
            "--teacher", "scripted:arith,error_rate=0.3", "--out", str(store), "--no_progress"]
    assert cli.main(argv) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert first["requests"] == 300 and first["statuses"] == {"ok": 300}
    content = store.read_bytes()
    assert cli.main(argv) == 0
    second = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert second["requests"] == 0 and store.read_bytes() == content
    records = list(read_records(store))
    wrong = [r for r in records if r.label != r.gold]
    assert 0.2 <= len(wrong) / len(records) <= 0.4
    assert all(arith.chain_is_consistent(r.rationale, r.label) for r in records)
    assert cli.main(["ledger", str(store), "--json"]) == 0
    ledger = json.loads(capsys.readouterr().out)
    assert ledger["records"] == 300 and ledger["statuses"] == {"ok": 300}
    assert ledger["label_accuracy"] == pytest.approx(1 - len(wrong) / 300, abs=1e-4)


# Digests of what the implementation before sampling/feedback/instruction effects answered
# (commit a47f2c9) for 300 problems x samples 0-2 with the built-in arith prompts: the demo
# and every existing store depend on these answers staying the same.
PINNED_DEFAULT = {"few_shot": "020c3e30c9ae7855", "zero_shot": "84281e1ddfd3040e"}


@pytest.mark.parametrize("style", sorted(PINNED_DEFAULT))
def test_default_answers_with_the_built_in_prompts_are_unchanged(style):
    template = prompting.load_prompt("arith", style)
    backend = make_backend("scripted:arith", _context())
    assert backend.teacher == "scripted:arith-err0.2-seed0"
    assert scripted.error_factor(template.render(_examples(1)[0])) == 1
    lines = [f"{r.rationale}|{r.label}|{r.usage['total']}|{r.extra}"
             for e in _examples(300) for s in (0, 1, 2) for r in _ask(backend, [e], s, template.render)]
    assert hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16] == PINNED_DEFAULT[style]


def _labels(spec, examples, samples):
    backend = make_backend(spec, _context())
    return [[r.label for r in _ask(backend, examples, s)] for s in range(samples)]


def test_samples_vary_by_temperature_and_vote_beats_one_sample():
    examples = _examples(400)
    gold = [e.gold for e in examples]
    greedy = _labels("scripted:arith,temperature=0", examples, 5)
    assert all(labels == greedy[0] for labels in greedy)            # temperature 0: all alike
    warm = _labels("scripted:arith,temperature=0.5", examples, 5)
    hot = _labels("scripted:arith", examples, 5)                    # default 1: independent draws
    def same(runs):  # share of samples 1-4 equal to sample 0
        return sum(a == b for run in runs[1:] for a, b in zip(run, runs[0])) / (4 * len(examples))
    assert 1.0 > same(warm) > same(hot)
    for run in hot:
        assert 0.14 <= sum(a != g for a, g in zip(run, gold)) / len(gold) <= 0.26
    vote = [collections.Counter(labels).most_common(1)[0][0] for labels in zip(*hot)]
    single = sum(a == g for a, g in zip(hot[0], gold)) / len(gold)
    assert sum(v == g for v, g in zip(vote, gold)) / len(gold) >= single + 0.1  # diverse slips: vote fixes most


@pytest.mark.parametrize("repair, low, high", [(0.0, 0.0, 0.05), (0.5, 0.35, 0.65), (1.0, 1.0, 1.0)])
def test_feedback_repairs_with_the_set_probability(tmp_path, repair, low, high):
    examples = _examples(300)
    backend = make_backend(f"scripted:arith,repair={repair}", _context())
    store = TeacherStore(tmp_path / "s.jsonl")
    runner = Runner(backend, prompting.load_prompt("arith", "few_shot"), store,
                    RunOptions(feedback=1, progress=False))
    summary = asyncio.run(runner.run(examples))["feedback"]
    assert 40 <= summary["re_asked"] <= 80                          # the ~20% first wrong
    assert low <= summary["fixed"] / summary["re_asked"] <= high
    for record in store.load().values():
        assert arith.chain_is_consistent(record.rationale, record.label)
        if record.extra.get("feedback", {}).get("rounds") and record.status == "ok":
            assert record.label == record.gold


def test_instruction_wording_changes_accuracy_deterministically():
    examples = _examples(600)
    base = prompting.load_prompt("arith", "zero_shot")
    backend = make_backend("scripted:arith", _context())

    def wrong(instruction):
        template = optimize.with_instruction(base, instruction)
        return {e.id for e, r in zip(examples, _ask(backend, examples, 0, template.render)) if r.label != e.gold}

    plain = wrong(base.instruction)
    helped = wrong("Think step by step. Check each computation. " + base.instruction)
    hurt = wrong("Answer quickly. " + base.instruction)
    assert 0.15 <= len(plain) / 600 <= 0.25 and 0.04 <= len(helped) / 600 <= 0.10  # x0.5 x0.7
    assert helped < plain < hurt                                   # the same draws: nested error sets
    template = optimize.with_instruction(base, "Solve the word problem.")   # no answer format asked for
    (response,) = _ask(backend, examples[:1], 0, template.render)
    assert response.label is None and response.text and "answer is" not in response.text.lower()


def test_meta_prompt_answer_is_an_edit_of_a_best_instruction():
    base = prompting.load_prompt("arith", "zero_shot")
    good, bad = "Think step by step. End with \"The answer is N.\"", "Guess. End with \"The answer is N.\""
    ranked = [optimize.Candidate(good, "h1", 1, 0.9, 50.0, {}), optimize.Candidate(bad, "h2", 1, 0.5, 40.0, {}),
              optimize.Candidate("Answer.", "h3", 1, 0.1, 40.0, {})]
    prompt = optimize.meta_prompt(base, ranked, _examples(2))
    assert optimize.is_meta_prompt(prompt) and [a for _, a in optimize.read_meta_prompt(prompt)] == [0.1, 0.5, 0.9]
    backend = make_backend("scripted:arith", _context())
    meta = Example("meta-1", "arith", "train", prompt, {}, None)
    proposals = [optimize.extract_instruction(_ask(backend, [meta], s, lambda e: e.text)[0].text) for s in range(8)]
    assert proposals == [optimize.extract_instruction(_ask(backend, [meta], s, lambda e: e.text)[0].text)
                         for s in range(8)]                      # deterministic per sample
    assert len(set(proposals)) >= 4 and not {good, bad} & set(proposals)
    for p in proposals:   # one phrase added to, or one sentence dropped from, one of the two best
        mine = scripted.sentences(p)
        assert any(len(set(mine) ^ set(scripted.sentences(b))) == 1 for b in (good, bad)), p

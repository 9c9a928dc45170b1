"""The built-in arithmetic task: deterministic, disjoint splits, rationales that compute."""
import hashlib
import json

import pytest

from t5x_sbs.data import arith

SIZES = {"train": 400, "validation": 60, "test": 100}


def _digest(paths):
    return {s: hashlib.sha256(open(p, "rb").read()).hexdigest() for s, p in paths.items()}


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = _digest(arith.write_splits(tmp_path / "a", seed=3, sizes=SIZES))
    b = _digest(arith.write_splits(tmp_path / "b", seed=3, sizes=SIZES))
    c = _digest(arith.write_splits(tmp_path / "c", seed=4, sizes=SIZES))
    assert a == b
    assert all(a[s] != c[s] for s in a)


def test_split_sizes_ids_and_disjoint_questions():
    data = arith.generate(seed=0)
    assert {s: len(p) for s, p in data.items()} == arith.DEFAULT_SIZES
    questions = {s: {p.question for p in ps} for s, ps in data.items()}
    assert all(len(questions[s]) == len(data[s]) for s in data)  # unique within a split
    assert not questions["train"] & questions["validation"]
    assert not questions["train"] & questions["test"]
    assert not questions["validation"] & questions["test"]
    ids = [p.id for ps in data.values() for p in ps]
    assert len(set(ids)) == len(ids)


def test_rationale_chains_evaluate_to_the_label(tmp_path):
    paths = arith.write_splits(tmp_path, seed=1, sizes=SIZES)
    for split, path in paths.items():
        rows = list(arith.read_split(path))
        assert len(rows) == SIZES[split]
        for row in rows:
            clauses = arith.parse_chain(row["rationale"])
            assert 2 <= len(clauses) <= 3
            assert arith.chain_is_consistent(row["rationale"], row["answer"]), row
            # independent re-computation from the clause text
            value = clauses[0][0]
            for a, op, b, c in clauses:
                value = {"+": a + b, "-": a - b, "*": a * b}[op]
                assert value == c and 0 <= c <= arith.MAX_VALUE
            assert str(value) == row["answer"]


def test_difficulty_knobs_bound_operands_and_values():
    data = arith.generate(seed=5, sizes={"train": 300},
                          difficulty=arith.Difficulty(max_value=40, max_operand=7, ops="+-*"))
    steps = [s for p in data["train"] for s in p.steps]
    assert {s.op for s in steps} == {"+", "-", "*"}
    for problem in data["train"]:
        assert all(0 <= v <= 40 for v in arith.evaluate(problem.start, problem.steps))
        assert all(s.operand <= 7 for s in problem.steps if s.op != "*")
    default = [s for p in arith.generate(seed=5, sizes={"train": 300})["train"] for s in p.steps]
    assert {s.op for s in default} == set(arith.DEFAULT_OPS)
    assert max(s.operand for s in default) <= arith.MAX_OPERAND


def test_parse_question_inverts_the_generator():
    for problem in arith.generate(seed=2, sizes=SIZES)["train"]:
        assert arith.parse_question(problem.question) == (problem.start, problem.steps)


def test_consistency_check_rejects_broken_chains():
    assert arith.chain_is_consistent("3 + 4 = 7. 7 * 2 = 14.", "14")
    assert not arith.chain_is_consistent("3 + 4 = 8. 8 * 2 = 16.", "16")   # wrong clause
    assert not arith.chain_is_consistent("3 + 4 = 7. 6 * 2 = 12.", "12")   # broken chain
    assert not arith.chain_is_consistent("3 + 4 = 7.", "8")                # label mismatch
    assert not arith.chain_is_consistent("no numbers here", "8")


def test_bad_inputs_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="unknown step sentence"):
        arith.parse_question("Ann has 3 apples. Ann juggles 2 apples. How many apples does Ann have now?")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "x"}) + "\n{oops\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        list(arith.read_split(bad))
    with pytest.raises(ValueError, match="non-negative"):
        arith.generate(seed=0, sizes={"dev": 10})
    with pytest.raises(ValueError, match="non-negative"):
        arith.generate(seed=0, sizes={"train": -1})
    with pytest.raises(ValueError, match="ops '/'"):
        arith.generate(seed=0, sizes={"train": 1}, difficulty=arith.Difficulty(ops="/"))

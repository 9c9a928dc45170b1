"""The built-in task: multi-step arithmetic word problems from a seeded generator.

Each problem is a start amount followed by 2-3 operations written as sentences; the gold
rationale is the chain of intermediate computations ("4 + 5 = 9. 9 - 3 = 6.") and the
label is the final number. Problems are unique across splits (train/validation/test are
disjoint by question text), and the same seed always gives byte-identical files.

`parse_question` inverts the sentence templates, so a solver (the `scripted:` teacher) can
work from the question text alone, as an LLM would.
"""
from __future__ import annotations

import dataclasses
import json
import operator
import os
import random
import re
from typing import Iterator

from t5x_sbs.records import Example

DATASET = "arith"
SPLITS = ("train", "validation", "test")
DEFAULT_SIZES = {"train": 2000, "validation": 300, "test": 500}
# Default difficulty: small enough that a tiny T5 trained from scratch on 2 CPU cores learns it
# in minutes, yet every answer needs 2-3 chained computations.
MAX_VALUE = 12      # every intermediate stays in [0, MAX_VALUE]: short numbers, small vocab
MAX_OPERAND = 5     # operands of + and - are 1..MAX_OPERAND; the start amount is 1..MAX_OPERAND+1
DEFAULT_OPS = "+-"  # "+-*" adds "... until there are n times as many" steps


@dataclasses.dataclass(frozen=True)
class Difficulty:
    """generate()'s knobs; `parse` reads the demo's `--arith` flag ("steps=3-5,ops=+-*,max_value=20")."""

    min_steps: int = 2
    max_steps: int = 3
    max_value: int = MAX_VALUE
    max_operand: int = MAX_OPERAND
    ops: str = DEFAULT_OPS

    @classmethod
    def parse(cls, text: str) -> "Difficulty":
        fields: dict = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, sep, value = item.partition("=")
            if not sep or key not in ("steps", "ops", "max_value", "max_operand"):
                raise ValueError(f"{item!r}: expected steps=MIN-MAX, ops=+-*, max_value=N or max_operand=N")
            try:
                if key == "steps":
                    low, _, high = value.partition("-")
                    fields["min_steps"], fields["max_steps"] = int(low), int(high or low)
                else:
                    fields[key] = value if key == "ops" else int(value)
            except ValueError:
                raise ValueError(f"{item!r}: {key} takes {'MIN-MAX' if key == 'steps' else 'an integer'}") from None
        difficulty = cls(**fields)
        difficulty.check()
        return difficulty

    def check(self) -> None:
        if not 1 <= self.min_steps <= self.max_steps:
            raise ValueError(f"steps {self.min_steps}-{self.max_steps}: need 1 <= MIN <= MAX")
        if not self.ops or set(self.ops) - set(OPS) or not 1 <= self.max_operand <= self.max_value:
            raise ValueError(f"ops {self.ops!r} (from {''.join(OPS)!r}), max_operand {self.max_operand}, "
                             f"max_value {self.max_value}: need 1 <= max_operand <= max_value")


NAMES = ("Ann", "Ben", "Cara", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jin", "Kai", "Lea")
ITEMS = ("apples", "marbles", "stickers", "books", "coins", "shells", "cards", "pens")
OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul}

# One sentence per (operator, wording); {n} is the operand. Parsing uses the same table.
TEMPLATES = {
    "+": ("{name} buys {n} more {item}.", "{name} finds {n} more {item}.",
          "A friend gives {name} {n} more {item}."),
    "-": ("{name} gives away {n} {item}.", "{name} loses {n} {item}.", "{name} sells {n} {item}."),
    "*": ("{name} collects until there are {n} times as many {item}.",),
}
START = "{name} has {n} {item}."
QUESTION = "How many {item} does {name} have now?"


@dataclasses.dataclass(frozen=True)
class Step:
    op: str       # "+", "-" or "*"
    operand: int


@dataclasses.dataclass(frozen=True)
class Problem:
    id: str
    split: str
    question: str
    start: int
    steps: tuple[Step, ...]

    @property
    def answer(self) -> str:
        return str(evaluate(self.start, self.steps)[-1])

    @property
    def rationale(self) -> str:
        return chain_text(self.start, self.steps)

    def to_json(self) -> dict:
        return {"id": self.id, "question": self.question, "rationale": self.rationale,
                "answer": self.answer}


def evaluate(start: int, steps) -> list[int]:
    """The running values: [start, after step 1, after step 2, ...]."""
    values = [start]
    for step in steps:
        values.append(OPS[step.op](values[-1], step.operand))
    return values


def chain_text(start: int, steps) -> str:
    """The rationale: one `a op b = c.` clause per step, in order."""
    values = evaluate(start, steps)
    return " ".join(f"{a} {s.op} {s.operand} = {c}." for a, s, c in zip(values, steps, values[1:]))


def _random_step(rng: random.Random, value: int, max_value: int, max_operand: int, ops: str) -> Step:
    choices = [op for op in ops if op != "*" or 0 < value <= max_value // 2]
    op = rng.choice(choices)
    if op == "+":
        return Step("+", rng.randint(1, min(max_operand, max_value - value)) if value < max_value else 0)
    if op == "-":
        return Step("-", rng.randint(1, min(max_operand, value)) if value > 0 else 0)
    return Step("*", rng.randint(2, max(2, min(4, max_value // value))))


def _random_problem(rng: random.Random, num_steps: int, max_value: int, max_operand: int, ops: str):
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    start = rng.randint(1, min(max_value, max_operand + 1))
    steps, value = [], start
    for _ in range(num_steps):
        step = _random_step(rng, value, max_value, max_operand, ops)
        if step.operand == 0 or OPS[step.op](value, step.operand) > max_value:
            # a dead end (0 or the cap): take the other direction so the chain stays in range
            step = Step("-", rng.randint(1, min(max_operand, value))) if value > 0 else \
                Step("+", rng.randint(1, min(max_operand, max_value)))
        steps.append(step)
        value = OPS[step.op](value, step.operand)
    sentences = [START.format(name=name, n=start, item=item)]
    sentences += [rng.choice(TEMPLATES[s.op]).format(name=name, n=s.operand, item=item) for s in steps]
    sentences.append(QUESTION.format(name=name, item=item))
    return " ".join(sentences), start, tuple(steps)


def generate(seed: int = 0, sizes: dict[str, int] | None = None,
             difficulty: Difficulty = Difficulty()) -> dict[str, list[Problem]]:
    """Unique problems per split; the split order is fixed so seeds reproduce exactly."""
    sizes = dict(DEFAULT_SIZES if sizes is None else sizes)
    difficulty.check()
    unknown = set(sizes) - set(SPLITS)
    if unknown or any(not isinstance(n, int) or n < 0 for n in sizes.values()):
        raise ValueError(f"sizes {sizes}: expected non-negative ints for splits {SPLITS}")
    rng = random.Random(f"{DATASET}-{seed}")
    seen: set[str] = set()
    out: dict[str, list[Problem]] = {}
    for split in SPLITS:
        problems: list[Problem] = []
        attempts = 0
        while len(problems) < sizes.get(split, 0):
            attempts += 1
            if attempts > 100 * max(1, sizes[split]):
                raise ValueError(f"cannot draw {sizes[split]} unique {split} problems; use fewer")
            question, start, steps = _random_problem(
                rng, rng.randint(difficulty.min_steps, difficulty.max_steps), difficulty.max_value,
                difficulty.max_operand, difficulty.ops)
            if question in seen:
                continue
            seen.add(question)
            problems.append(Problem(f"{DATASET}-{split}-{len(problems)}", split, question, start, steps))
        out[split] = problems
    return out


def write_splits(out_dir: str | os.PathLike, seed: int = 0, sizes: dict[str, int] | None = None,
                 difficulty: Difficulty = Difficulty()) -> dict[str, str]:
    """Writes `{split}.jsonl` (fields id, question, rationale, answer); returns split -> path."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {}
    for split, problems in generate(seed, sizes, difficulty).items():
        path = os.path.join(os.fspath(out_dir), f"{split}.jsonl")
        with open(path, "w", encoding="utf-8") as f:
            for problem in problems:
                f.write(json.dumps(problem.to_json(), sort_keys=True) + "\n")
        paths[split] = path
    return paths


def read_split(path: str | os.PathLike) -> Iterator[dict]:
    with open(path, encoding="utf-8") as f:
        for line_no, text in enumerate(f, start=1):
            if text.strip():
                try:
                    yield json.loads(text)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{line_no}: invalid JSON ({e.msg})") from None


def load_examples(data_dir: str | os.PathLike, split: str) -> list:
    """`{data_dir}/{split}.jsonl` as `records.Example`s (what the teacher CLI and the tasks read;
    same ids and text as `tasks.custom.register_jsonl_dataset(..., input_fields=("question",),
    label_field="answer", id_field="id")`)."""
    split = {"valid": "validation", "dev": "validation"}.get(split, split)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    path = os.path.join(os.fspath(data_dir), f"{split}.jsonl")
    examples = []
    for line_no, row in enumerate(read_split(path), start=1):
        for field in ("id", "question", "answer"):
            if not isinstance(row.get(field), str) or not row[field].strip():
                raise ValueError(f"{path}:{line_no}: field {field!r} missing or empty")
        examples.append(Example(row["id"], DATASET, split, row["question"], {"question": row["question"]},
                                row["answer"]))
    return examples


# --- Parsing, for solvers and checks -------------------------------------------------------

def _sentence_patterns():
    """(compiled regex, op) per template; {n} captures the operand."""
    def to_regex(template: str) -> re.Pattern:
        pattern = re.escape(template)
        for field, group in (("name", r"(?P<name>[A-Z][a-z]+)"), ("item", r"(?P<item>[a-z]+)"),
                             ("n", r"(?P<n>\d+)")):
            pattern = pattern.replace(re.escape("{" + field + "}"), group)
        return re.compile(pattern + "$")
    return [(to_regex(t), op) for op, ts in TEMPLATES.items() for t in ts]


_STEP_PATTERNS = _sentence_patterns()
_START_PATTERN = re.compile(r"(?P<name>[A-Z][a-z]+) has (?P<n>\d+) (?P<item>[a-z]+)\.$")
_CLAUSE = re.compile(r"(-?\d+) ([-+*]) (-?\d+) = (-?\d+)\.")


def parse_question(question: str) -> tuple[int, tuple[Step, ...]]:
    """Recovers (start, steps) from a generated question; ValueError if it is not one."""
    sentences = re.findall(r"[^.?]+[.?]", question)
    sentences = [s.strip() for s in sentences]
    if len(sentences) < 3 or not sentences[-1].endswith("?"):
        raise ValueError(f"not an arithmetic problem: {question!r}")
    start = _START_PATTERN.match(sentences[0])
    if not start:
        raise ValueError(f"no start amount in {sentences[0]!r}")
    steps = []
    for sentence in sentences[1:-1]:
        for pattern, op in _STEP_PATTERNS:
            m = pattern.match(sentence)
            if m:
                steps.append(Step(op, int(m.group("n"))))
                break
        else:
            raise ValueError(f"unknown step sentence {sentence!r}")
    return int(start.group("n")), tuple(steps)


def parse_chain(rationale: str) -> list[tuple[int, str, int, int]]:
    """The `a op b = c.` clauses of a rationale, as ints."""
    return [(int(a), op, int(b), int(c)) for a, op, b, c in _CLAUSE.findall(rationale)]


def chain_is_consistent(rationale: str, label: str) -> bool:
    """Each clause computes correctly, chains into the next, and the last result is the label."""
    clauses = parse_chain(rationale)
    if not clauses:
        return False
    for i, (a, op, b, c) in enumerate(clauses):
        if OPS[op](a, b) != c or (i and clauses[i - 1][3] != a):
            return False
    return str(clauses[-1][3]) == label.strip()

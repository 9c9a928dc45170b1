"""The `scripted:` teacher: a deterministic, offline stand-in for an LLM on the built-in task.

`--teacher scripted:arith[,error_rate=0.2][,seed=0][,temperature=1][,repair=0.5]` solves each
arithmetic word problem from its question text (t5x_sbs.data.arith.parse_question)
and writes the chain of computations as its rationale. Like a real LLM it is sometimes
wrong: for a hashed `error_rate` share of examples it slips at one step (a misread operand
or operator) and then computes the rest correctly from the wrong value, so the wrong label
comes with a rationale that is CONSISTENT with it. Which examples are wrong, and how,
depends only on (seed, example id, sample), so reruns and resumes give identical stores.

It simulates, deterministically, what the teacher-side methods act on (a simulation, not a
model of any real LLM; the numbers are chosen so that effects are visible and testable):
  * sampling (`--samples N`): sample k draws its own slip with probability `temperature`
    (clipped to 1), else repeats sample 0's answer; temperature 0 is greedy (all alike),
    the default 1 makes every sample an independent draw;
  * feedback (`--feedback K`): a re-ask that names the correct answer is answered with the
    correct chain with probability `repair`, else with a fresh slip;
  * the instruction: the error rate is `error_rate` times the factors of `INSTRUCTION_EFFECTS`
    whose phrase occurs in the prompt's instruction part (all text before the last "Q:"),
    and an instruction part that never says "answer is" gets answers without the answer
    phrase (the runner marks them unparseable). The built-in few- and zero-shot arith
    prompts contain no phrase of the table, so they keep exactly `error_rate`;
  * an `optimize-prompt` meta-prompt is answered with one edit of one of its two best
    instructions: a phrase added from `PROPOSAL_PHRASES` or a sentence dropped.

It goes through the same runner, store and ledger as Gemini; `usage` counts whitespace
words of prompt and answer (marked `extra.usage_unit = "words"`), and it costs nothing.
"""
from __future__ import annotations

import hashlib
import math
import random
import re

from t5x_sbs.data import arith
from t5x_sbs.teacher import optimize
from t5x_sbs.teacher.backends import BackendContext, TeacherBackend, TeacherRequest, TeacherResponse

DEFAULT_ERROR_RATE = 0.2
DEFAULT_TEMPERATURE = 1.0
DEFAULT_REPAIR = 0.5
TASKS = ("arith",)
OPTIONS = ("error_rate", "seed", "temperature", "repair")
# (phrase in the instruction, factor on the error rate): the simulated effect of wording.
INSTRUCTION_EFFECTS = (("step by step", 0.5), ("check", 0.7), ("careful", 0.8),
                       ("quick", 1.5), ("guess", 1.5))
ANSWER_PHRASE = "answer is"
PROPOSAL_PHRASES = ("Think step by step.", "Check each computation before you answer.",
                    "Work carefully.", "Answer quickly.", "Take a guess when unsure.",
                    "Keep it short.")
_SENTENCE_BREAK = re.compile(r'(?<=[.!?])\s+|(?<=[.!?]")\s+')


def _rng(seed: int, example_id: str, sample: int, salt: str = "") -> random.Random:
    digest = hashlib.sha256(f"scripted{salt}:{seed}:{example_id}:{sample}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def instruction_part(prompt: str) -> str:
    """What precedes the asked question: the instruction (and any demonstrations); empty
    for a prompt that is not a rendered "Q: ..." query."""
    return prompt.rsplit("Q:", 1)[0] if "Q:" in prompt else ""


def error_factor(prompt: str) -> float:
    """The simulated effect of the prompt's wording on the error rate (1.0: none)."""
    text = instruction_part(prompt).lower()
    return math.prod(factor for phrase, factor in INSTRUCTION_EFFECTS if phrase in text)


def states_answer_format(prompt: str) -> bool:
    """False for a rendered query whose instruction part never shows the answer phrase."""
    return "Q:" not in prompt or ANSWER_PHRASE in instruction_part(prompt).lower()


def _slip(rng: random.Random, start: int, steps: tuple[arith.Step, ...]) -> tuple[arith.Step, ...]:
    """One plausible mistake at one step; later steps are done right on the wrong value.

    Candidates are tried in a seeded order and the first whose chain stays non-negative is
    taken (children's word problems rarely go below zero, and neither do LLM slips)."""
    index = rng.randrange(len(steps))
    step = steps[index]
    candidates = [arith.Step(step.op, step.operand + d) for d in (1, 2, 3, -1, -2, -3)]
    if step.op in "+-":
        candidates.append(arith.Step("-" if step.op == "+" else "+", step.operand))
    rng.shuffle(candidates)
    fallback = arith.Step(step.op, step.operand + 1)
    for wrong in candidates + [fallback]:
        if wrong.operand < (2 if wrong.op == "*" else 1):
            continue
        new_steps = steps[:index] + (wrong,) + steps[index + 1:]
        if min(arith.evaluate(start, new_steps)) >= 0 or wrong is fallback:
            return new_steps
    raise AssertionError("unreachable: the fallback is always returned")


def sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_BREAK.split(text.strip()) if s]


def propose_instruction(meta_prompt: str, seed: int, sample: int) -> str:
    """One edit of one of the two best instructions in an optimize-prompt meta-prompt."""
    scored = sorted(optimize.read_meta_prompt(meta_prompt), key=lambda pair: pair[1])
    if not scored:
        return "Solve the problem. End with \"The answer is N.\""
    rng = _rng(seed, hashlib.sha256(meta_prompt.encode()).hexdigest(), sample, salt="-propose")
    base = scored[-1 - rng.randrange(min(2, len(scored)))][0]
    parts = sentences(base)
    new = [p for p in PROPOSAL_PHRASES if p.lower() not in base.lower()]
    if new and (len(parts) < 2 or rng.random() < 0.75):
        parts.insert(rng.randrange(len(parts) + 1), rng.choice(new))
    else:
        parts.pop(rng.randrange(len(parts)))
    return " ".join(parts)


class ScriptedArithTeacher(TeacherBackend):
    """Solves the built-in arithmetic problems, wrong on a seeded share of them."""

    def __init__(self, error_rate: float = DEFAULT_ERROR_RATE, seed: int = 0,
                 temperature: float = DEFAULT_TEMPERATURE, repair: float = DEFAULT_REPAIR):
        for name, value in (("error_rate", error_rate), ("repair", repair)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"scripted:arith {name}={value} is not in [0, 1]")
        if temperature < 0:
            raise ValueError(f"scripted:arith temperature={temperature} is not in [0, inf)")
        self.error_rate, self.seed, self.temperature, self.repair = error_rate, seed, temperature, repair
        # Non-default settings name a different teacher, so their records never mix with others.
        self.teacher = f"scripted:arith-err{error_rate:g}-seed{seed}" + \
            (f"-temp{temperature:g}" if temperature != DEFAULT_TEMPERATURE else "") + \
            (f"-repair{repair:g}" if repair != DEFAULT_REPAIR else "")

    def _stream(self, example_id: str, sample: int) -> random.Random:
        """The draws of this sample, or of sample 0 when a low temperature repeats it."""
        if sample and self.temperature < 1.0 and \
                _rng(self.seed, example_id, sample, salt="-temperature").random() >= self.temperature:
            sample = 0
        return _rng(self.seed, example_id, sample)

    def answer(self, question: str, example_id: str, sample: int = 0,
               error_rate: float | None = None) -> tuple[str, str, bool]:
        """(rationale, label, slipped) for one question; raises ValueError if unreadable."""
        start, steps = arith.parse_question(question)
        rng = self._stream(example_id, sample)
        slipped = rng.random() < (self.error_rate if error_rate is None else error_rate)
        if slipped:
            steps = _slip(rng, start, steps)
        return arith.chain_text(start, steps), str(arith.evaluate(start, steps)[-1]), slipped

    def re_answer(self, question: str, example_id: str, sample: int, round_: int) -> tuple[str, str, bool]:
        """A feedback re-ask: the correct chain with probability `repair`, else a fresh slip."""
        start, steps = arith.parse_question(question)
        rng = _rng(self.seed, example_id, sample, salt=f"-feedback{round_}")
        slipped = rng.random() >= self.repair
        if slipped:
            steps = _slip(rng, start, steps)
        return arith.chain_text(start, steps), str(arith.evaluate(start, steps)[-1]), slipped

    async def generate(self, request: TeacherRequest) -> TeacherResponse:
        if optimize.is_meta_prompt(request.prompt):
            text = optimize.wrap_instruction(propose_instruction(request.prompt, self.seed, request.sample))
            return self._response(request.prompt, text=text)
        example = request.example
        question = example.input.get("question", example.text)
        try:
            if request.feedback_round:
                rationale, label, slipped = self.re_answer(question, example.id, request.sample,
                                                           request.feedback_round)
            else:
                rate = min(1.0, self.error_rate * error_factor(request.prompt))
                rationale, label, slipped = self.answer(question, example.id, request.sample, rate)
        except ValueError as e:  # not one of our problems: report it, lose nothing
            return TeacherResponse(status="failed", error=f"scripted:arith cannot read {example.id}: {e}")
        if not states_answer_format(request.prompt):  # no answer phrase asked for, none written
            return self._response(request.prompt, text=rationale, scripted_slip=slipped)
        return self._response(request.prompt, rationale=rationale, label=label, scripted_slip=slipped)

    @staticmethod
    def _response(prompt: str, text: str | None = None, rationale: str | None = None,
                  label: str | None = None, **extra: object) -> TeacherResponse:
        prompt_words = len(prompt.split())
        answer_words = len((text if text is not None else rationale or "").split()) + (label is not None)
        return TeacherResponse(
            text=text, rationale=rationale, label=label,
            usage={"prompt": prompt_words, "candidates": answer_words, "total": prompt_words + answer_words},
            extra={"usage_unit": "words", **extra})


def make_backend(name: str, context: BackendContext, **_: object) -> TeacherBackend:
    """`scripted:arith,error_rate=R,seed=S,temperature=T,repair=P`; unknown names or options fail loudly."""
    if name not in TASKS:
        raise ValueError(f"--teacher scripted:{name}: unknown scripted teacher; known: {list(TASKS)}")
    options = dict(context.options)
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise ValueError(f"--teacher scripted:{name}: unknown option(s) {sorted(unknown)}; "
                         f"known: {', '.join(OPTIONS)}")
    try:
        return ScriptedArithTeacher(error_rate=float(options.get("error_rate", DEFAULT_ERROR_RATE)),
                                    seed=int(options.get("seed", context.seed)),
                                    temperature=float(options.get("temperature", DEFAULT_TEMPERATURE)),
                                    repair=float(options.get("repair", DEFAULT_REPAIR)))
    except ValueError as e:
        raise ValueError(f"--teacher scripted:{name}: bad option value ({e})") from None

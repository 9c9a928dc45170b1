"""OPRO-style search for a dataset's zero-shot instruction (`t5x-sbs optimize-prompt`).

Round 0 scores the dataset's own zero-shot instruction. Each later round shows the teacher a
meta-prompt holding the best instructions so far with their scores (worst first, as in
Yang et al. 2023, "Large Language Models as Optimizers") and asks for `candidates` new
ones (samples of the one meta-prompt); every new instruction is scored on a fixed labelled
subset of train (never validation/test: `train_examples`, chosen by stable id hash) by the
teacher's label accuracy against gold and the mean tokens per example (prompt + answer, as
the API counted them). The winner (best `accuracy - token_weight * mean_tokens / 1000`,
then fewer tokens, then earlier) is written as a prompt file (`prompting.template_spec`)
that `t5x-sbs rationales --prompt FILE` reads back with the same prompt hash.

Every call, proposals included, is a `Runner` run into one teacher store, so a rerun after
a crash re-asks nothing: the meta-prompts are rebuilt from stored scores, hence identical,
hence keyed like before. The budget (`--max_tokens`, `--max_usd`, the ledger's price
table) covers every record in the store; before each step the cost of its missing calls is
projected from the largest tokens-per-prompt-word and answer size seen so far (a first
single call measures them), and the search stops rather than start a step that would cross
the cap.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
from typing import Any, Callable, Sequence

from t5x_sbs.data import sources
from t5x_sbs.records import Example, TeacherRecord
from t5x_sbs.teacher import annotation, ledger, prompting
from t5x_sbs.teacher.backends import TeacherBackend
from t5x_sbs.teacher.feedback import label_agrees, words
from t5x_sbs.teacher.runner import Job, RunOptions, Runner
from t5x_sbs.teacher.store import TeacherStore, read_store

SUBSET_SALT = "optimize-prompt"
META_STYLE = "optimize_meta"
META_HEADER = ("Your task is to write the instruction that a teacher model reads before solving one "
               "{dataset} problem. Below are earlier instructions with their label accuracy on "
               "training problems (higher is better) and the mean tokens per problem (lower is "
               "better), worst first.\n\n")
META_ENTRY = "<INS>{instruction}</INS>\naccuracy: {accuracy:.1f}%  tokens: {tokens:.1f}\n\n"
META_EXEMPLARS = "Problems the instruction is used for, each with its correct answer:\n\n"
META_FOOTER = ("Write a new instruction that differs from all instructions above and reaches a higher "
               "accuracy with fewer tokens; answers must keep ending in the format shown above. "
               "Write your new instruction between <INS> and </INS>.")
_ENTRY = re.compile(r"<INS>(.*?)</INS>\naccuracy: ([0-9.]+)%", re.S)
_INSTRUCTION = re.compile(r"<INS>(.*?)</INS>", re.S)
# The meta-prompt is the whole request: the example's text, asked as is.
META_TEMPLATE_FIELDS = dict(style=META_STYLE, instruction="", demonstrations=(), query_template="{text}",
                            answer_template="{rationale}", separator="", stop_sequences=())


@dataclasses.dataclass(frozen=True)
class OptimizeConfig:
    subset: int = 50               # labelled train examples every candidate is scored on
    rounds: int = 5                # proposal rounds after the baseline
    candidates: int = 4            # proposals per round (samples of one meta-prompt)
    keep: int = 8                  # best instructions shown in the meta-prompt
    exemplars: int = 3             # subset problems shown in the meta-prompt
    token_weight: float = 0.0      # accuracy points given up per 1000 tokens per example
    max_tokens: int | None = None  # budget over the whole store
    max_usd: float | None = None
    max_output_tokens: int = 512   # the answer-size prior before any call is seen
    run: RunOptions = dataclasses.field(default_factory=lambda: RunOptions(progress=False))


@dataclasses.dataclass(frozen=True)
class Candidate:
    instruction: str
    prompt_hash: str
    round: int
    accuracy: float                # label agrees with gold / subset size (non-ok counts as wrong)
    mean_tokens: float             # total tokens per subset example
    statuses: dict[str, int]

    def score(self, token_weight: float) -> float:
        return self.accuracy - token_weight * self.mean_tokens / 1000.0


def is_meta_prompt(text: str) -> bool:
    return META_FOOTER in text


def read_meta_prompt(text: str) -> list[tuple[str, float]]:
    """(instruction, accuracy in [0, 1]) for each scored instruction a meta-prompt shows."""
    return [(m.group(1).strip(), float(m.group(2)) / 100.0) for m in _ENTRY.finditer(text)]


def wrap_instruction(instruction: str) -> str:
    return f"<INS>{instruction}</INS>"


def extract_instruction(text: str | None) -> str | None:
    """The instruction between <INS> and </INS> of a proposal (the last one), or None."""
    found = [m.strip() for m in _INSTRUCTION.findall(text or "") if m.strip()]
    return found[-1] if found else None


def train_examples(dataset: str, data_dir: str) -> list[Example]:
    """The train examples the tasks train on (a source dataset's validation carve-out excluded)."""
    if dataset in sources.DATASETS:
        return sources.split_examples(dataset, data_dir, "train")
    return annotation.load_examples(dataset, data_dir, "train")


def scoring_subset(examples: Sequence[Example], size: int) -> list[Example]:
    """`size` labelled train examples, the same for any run: ordered by a hash of their id."""
    if any(e.split != "train" for e in examples):
        raise ValueError("optimize-prompt scores on train examples only (never validation/test)")
    labelled = sorted((e for e in examples if e.gold is not None),
                      key=lambda e: sources.id_fraction(e.id, SUBSET_SALT))
    if not labelled:
        raise ValueError("optimize-prompt: the train split has no labelled examples to score on")
    return labelled[:size]


def with_instruction(base: prompting.PromptTemplate, instruction: str) -> prompting.PromptTemplate:
    """The base zero-shot template asking with another instruction (normalised spacing)."""
    return dataclasses.replace(base, instruction=instruction.strip() + "\n\n")


def meta_prompt(base: prompting.PromptTemplate, ranked: Sequence[Candidate], exemplars: Sequence[Example]) -> str:
    """The proposal request: scored instructions (worst first), problems, the ask."""
    parts = [META_HEADER.format(dataset=base.dataset)]
    parts += [META_ENTRY.format(instruction=c.instruction.strip(), accuracy=100 * c.accuracy, tokens=c.mean_tokens)
              for c in reversed(ranked)]
    parts.append(META_EXEMPLARS)
    for e in exemplars:
        parts.append(base.query(e) + base.answer_text("...", base.gold_answer(e) or "") + "\n\n")
    parts.append(META_FOOTER)
    return "".join(parts)


class ProposalRunner(Runner):
    """The runner for meta-prompts: an answer's label is the instruction it proposes."""

    def parse(self, dataset: str, text: str) -> tuple[str | None, str | None, str | None]:
        instruction = extract_instruction(text)
        if instruction is None:
            return None, None, "no instruction between <INS> and </INS>"
        return "", instruction, None


@dataclasses.dataclass
class Budget:
    """Spent tokens/dollars (the whole store) and a projection of a step's missing calls.

    Per role (proposal or scoring) it keeps the largest prompt-tokens-per-word and answer
    size seen; a role with no call seen yet is projected from priors (2 tokens per word,
    `output_prior` answer tokens) and is measured by one call first (`Optimizer.ask`)."""

    max_tokens: int | None
    max_usd: float | None
    price: dict[str, float] | None
    output_prior: int
    spent_tokens: int = 0
    spent_usd: float = 0.0
    seen: dict[str, tuple[float, int]] = dataclasses.field(default_factory=dict)  # role -> (per word, output)

    def spend(self, records: Sequence[TeacherRecord]) -> None:
        self.spent_tokens = sum(ledger.spent_usage(r)["total"] for r in records)
        self.spent_usd = sum(ledger.record_cost(r) for r in records)

    def observe(self, role: str, record: TeacherRecord, prompt: str) -> None:
        usage = record.usage
        if not usage.get("total"):
            return
        per_word, output = self.seen.get(role, (0.0, 0))
        self.seen[role] = (max(per_word, int(usage.get("prompt", 0)) / max(1, words(prompt))),
                           max(output, int(usage.get("candidates", 0)) + int(usage.get("thoughts", 0))))

    def projection(self, role: str, prompts: Sequence[str]) -> tuple[int, float]:
        per_word, output = self.seen.get(role, (2.0, self.output_prior))
        usages = [{"prompt": math.ceil(per_word * words(p)), "candidates": output} for p in prompts]
        return (sum(u["prompt"] + u["candidates"] for u in usages),
                sum(ledger.usage_cost(u, self.price) for u in usages))

    def allows(self, role: str, prompts: Sequence[str]) -> bool:
        tokens, usd = self.projection(role, prompts)
        return (self.max_tokens is None or self.spent_tokens + tokens <= self.max_tokens) and \
               (self.max_usd is None or self.spent_usd + usd <= self.max_usd)


class BudgetSpent(Exception):
    """The next step would cross the budget cap."""


class Optimizer:
    def __init__(self, base: prompting.PromptTemplate, examples: Sequence[Example], store_path: str,
                 new_backend: Callable[[str], TeacherBackend], config: OptimizeConfig):
        """`new_backend(role)` builds a fresh backend per run ("meta": proposals, "score")."""
        if base.style != "zero_shot" or base.json_output:
            raise ValueError("optimize-prompt searches a zero-shot text instruction")
        self.base, self.config, self.new_backend = base, config, new_backend
        self.subset = scoring_subset(examples, config.subset)
        self.store_path = store_path
        self.meta_template = prompting.PromptTemplate(dataset=base.dataset, **META_TEMPLATE_FIELDS)
        teacher = new_backend("score").teacher
        price = ledger.model_price(teacher, ledger.load_prices())
        if config.max_usd is not None and price is None:
            raise ValueError(f"optimize-prompt: {ledger.DEFAULT_PRICES} has no price for {teacher}, so "
                             "--max_usd cannot be enforced; use --max_tokens")
        self.budget = Budget(config.max_tokens, config.max_usd, price, config.max_output_tokens)
        self.requests = 0
        self.candidates: list[Candidate] = []

    # -- asking through the runner ------------------------------------------------------
    async def ask(self, template: prompting.PromptTemplate, examples: Sequence[Example], samples: int,
                  role: str) -> list[TeacherRecord]:
        """Every (example, sample) answer, asking only what the store lacks; raises BudgetSpent
        instead of starting calls the budget cannot cover."""
        runner_type = ProposalRunner if role == "meta" else Runner
        runner = runner_type(self.new_backend(role), template, TeacherStore(self.store_path),
                             dataclasses.replace(self.config.run, samples=samples, feedback=0))
        contents = read_store(self.store_path)
        self.budget.spend(list(contents.records.values()))
        todo = runner.plan(examples, contents.records)
        if role not in self.budget.seen and len(todo) > 1:  # one call first, to measure
            await runner.backend.aclose()
            await self.ask(template, [todo[0].example], todo[0].sample + 1, role)
            return await self.ask(template, examples, samples, role)
        if not self.budget.allows(role, [template.render(job.example) for job in todo]):
            await runner.backend.aclose()
            raise BudgetSpent()
        if todo:
            self.requests += (await runner.run(examples))["requests"]
        records = read_store(self.store_path).records
        self.budget.spend(list(records.values()))
        answers = [records[runner.key(Job(e, s))] for e in examples for s in range(samples)]
        for record, e in zip(answers, [e for e in examples for _ in range(samples)]):
            self.budget.observe(role, record, template.render(e))
        return answers

    async def score(self, instruction: str, round_: int) -> Candidate:
        template = with_instruction(self.base, instruction)
        records = await self.ask(template, self.subset, 1, "score")
        right = sum(r.status == "ok" and bool(label_agrees(r.dataset, r.gold, r.label)) for r in records)
        statuses: dict[str, int] = {}
        for r in records:
            statuses[r.status] = statuses.get(r.status, 0) + 1
        candidate = Candidate(template.instruction.strip(), template.hash, round_, right / len(records),
                              sum(ledger.spent_usage(r)["total"] for r in records) / len(records), statuses)
        self.candidates.append(candidate)
        return candidate

    async def propose(self, round_: int) -> list[str]:
        text = meta_prompt(self.base, self.ranked()[:self.config.keep], self.subset[:self.config.exemplars])
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
        example = Example(id=f"meta-r{round_}-{digest}", dataset=self.base.dataset, split="train", text=text,
                          input={"round": round_}, gold=None)
        records = await self.ask(self.meta_template, [example], self.config.candidates, "meta")
        return [r.label for r in records if r.status == "ok" and r.label]

    # -- the search ------------------------------------------------------------------------
    def ranked(self) -> list[Candidate]:
        """Best first: score, then fewer tokens, then earlier."""
        order = {id(c): i for i, c in enumerate(self.candidates)}
        return sorted(self.candidates, key=lambda c: (-c.score(self.config.token_weight), c.mean_tokens, order[id(c)]))

    async def run(self) -> dict[str, Any]:
        stopped, rounds_done = "rounds", 0
        try:
            await self.score(self.base.instruction, 0)
            for round_ in range(1, self.config.rounds + 1):
                seen = {c.instruction for c in self.candidates}
                for instruction in await self.propose(round_):
                    if instruction.strip() not in seen:
                        seen.add(instruction.strip())
                        await self.score(instruction, round_)
                rounds_done = round_
        except BudgetSpent:
            stopped = "budget"
        if not self.candidates:
            raise ValueError("optimize-prompt: the budget does not cover scoring the baseline instruction")
        return {"stopped": stopped, "rounds_done": rounds_done, "requests": self.requests,
                "spent_tokens": self.budget.spent_tokens, "spent_usd": round(self.budget.spent_usd, 6)}

    def winner_template(self) -> prompting.PromptTemplate:
        return with_instruction(self.base, self.ranked()[0].instruction)


def write_json_atomic(path: str, obj: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)


def write_results(optimizer: Optimizer, summary: dict[str, Any], out_dir: str) -> dict[str, Any]:
    """The winner as a prompt file (prompt.json) and every candidate (history.json)."""
    best, baseline = optimizer.ranked()[0], optimizer.candidates[0]
    as_dict = lambda c: {**dataclasses.asdict(c), "accuracy": round(c.accuracy, 4),  # noqa: E731
                         "mean_tokens": round(c.mean_tokens, 2)}
    template = optimizer.winner_template()
    assert template.hash == best.prompt_hash
    prompt_file = os.path.join(out_dir, "prompt.json")
    write_json_atomic(prompt_file, prompting.template_spec(template, optimized={
        "teacher": optimizer.new_backend("score").teacher, "subset": len(optimizer.subset),
        "winner": as_dict(best), "baseline": as_dict(baseline), "token_weight": optimizer.config.token_weight}))
    write_json_atomic(os.path.join(out_dir, "history.json"), [as_dict(c) for c in optimizer.candidates])
    return {**summary, "prompt_file": prompt_file, "prompt_hash": template.hash,
            "candidates": len(optimizer.candidates),
            "winner": as_dict(best), "baseline": as_dict(baseline)}

"""One annotation run as a library call: a dataset split -> the teacher -> a JSONL store.

`AnnotationJob` holds what `t5x-sbs rationales` takes as flags (the CLI builds one from its
arguments, the demo and sweeps build one directly) and `annotate(job)` runs it through the
runner and returns the runner's summary. `build_backend` is the one place a `--teacher`
spec and the Gemini client settings become a backend (rationales and optimize-prompt).
"""
from __future__ import annotations

import asyncio
import dataclasses
from typing import Any, Callable

from t5x_sbs.data import arith, sources
from t5x_sbs.records import Example
from t5x_sbs.teacher import backends, prompting
from t5x_sbs.teacher.runner import RunOptions, Runner
from t5x_sbs.teacher.store import TeacherStore

# Built-in (generated) tasks the teacher can annotate besides the source datasets.
BUILT_IN_TASKS: dict[str, Callable[[str, str], list[Example]]] = {"arith": arith.load_examples}


@dataclasses.dataclass(frozen=True)
class GeminiSettings:
    """The Gemini client settings (`gemini.GeminiSettings` less the model); defaults = the CLI's."""

    base_url: str | None = None
    vertex: bool = False
    project: str | None = None
    location: str | None = None
    timeout_s: float = 120.0
    attempts: int = 5
    initial_delay_s: float = 1.0
    max_delay_s: float = 60.0
    temperature: float = 0.0
    max_output_tokens: int = 512
    thinking_budget: int | None = None


@dataclasses.dataclass(frozen=True)
class AskSettings:
    """How the teacher is asked: every `t5x-sbs rationales` flag besides what and where."""

    prompt: str = "few_shot"        # few_shot | zero_shot | a prompt file
    json_output: bool = False
    limit: int | None = None        # only the first N examples (after `fraction`)
    fraction: float = 1.0           # the deterministic subset id_fraction(id, 'rationale') < F
    options: RunOptions = dataclasses.field(default_factory=RunOptions)
    gemini: GeminiSettings = dataclasses.field(default_factory=GeminiSettings)


@dataclasses.dataclass(frozen=True)
class AnnotationJob:
    """One annotation run: which split, which teacher, which store, and how to ask."""

    dataset: str
    data_dir: str
    split: str
    teacher: str                    # gemini:MODEL | replay:palm | scripted:NAME[,k=v...]
    out: str                        # the JSONL store (appended to, resumable)
    seed: int = 0
    ask: AskSettings = dataclasses.field(default_factory=AskSettings)


def load_examples(dataset: str, data_dir: str, split: str) -> list[Example]:
    """Source datasets through data.sources; built-in tasks through their data module."""
    if dataset in sources.DATASETS:
        return sources.load_examples(dataset, data_dir, split)
    if dataset not in BUILT_IN_TASKS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {sorted(sources.DATASETS)}")
    return list(BUILT_IN_TASKS[dataset](data_dir, split))


def select_examples(examples: list[Example], fraction: float, limit: int | None) -> list[Example]:
    """The tasks' rationale subset (`fraction`), then the first `limit` of it."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"--fraction {fraction} is not in (0, 1]")
    if fraction < 1.0:
        examples = [e for e in examples if sources.id_fraction(e.id, salt="rationale") < fraction]
    return examples[:limit] if limit is not None else examples


def build_backend(teacher: str, context: backends.BackendContext,
                  gemini: GeminiSettings | None = None) -> backends.TeacherBackend:
    """The backend a `--teacher` spec names; only Gemini takes the client settings."""
    kind = backends.parse_spec(teacher)[0]
    settings: dict[str, Any] = dataclasses.asdict(gemini or GeminiSettings()) if kind == "gemini" else {}
    return backends.make_backend(teacher, context, **settings)


def annotate(job: AnnotationJob) -> dict[str, Any]:
    """Asks the teacher for what the store lacks; returns the runner's summary. Bad data,
    templates or store lines raise ValueError naming the file, line and field."""
    ask = job.ask
    examples = select_examples(load_examples(job.dataset, job.data_dir, job.split), ask.fraction, ask.limit)
    template = prompting.resolve_prompt(job.dataset, ask.prompt, ask.json_output)
    context = backends.BackendContext(dataset=job.dataset, data_dir=job.data_dir, split=job.split, seed=job.seed)
    runner = Runner(build_backend(job.teacher, context, ask.gemini), template, TeacherStore(job.out), ask.options)
    return asyncio.run(runner.run(examples))

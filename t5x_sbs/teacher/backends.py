"""The teacher backend interface: what every teacher (gemini, replay, scripted) implements.

A backend turns one rendered prompt for one example into one `TeacherResponse`. It does
not parse, store, meter or retry-at-the-record-level: the runner (`t5x_sbs.teacher.runner`)
does that the same way for every backend, so records look alike whoever wrote them.

Writing a backend (e.g. `t5x_sbs/teacher/scripted.py`):

    from t5x_sbs.teacher.backends import TeacherBackend, TeacherRequest, TeacherResponse

    class MyTeacher(TeacherBackend):
        teacher = "scripted:arith"          # goes into TeacherRecord.teacher

        async def generate(self, request: TeacherRequest) -> TeacherResponse:
            ...                             # request.example, request.prompt, request.sample
            return TeacherResponse(text="... The answer is 7.")   # parsed by data.parsing
            # or, when the backend already knows the parts (no text format to parse):
            return TeacherResponse(rationale="3 + 4 = 7.", label="7")

    def make_backend(name: str, context: BackendContext) -> TeacherBackend:
        ...                                 # `--teacher scripted:NAME,k=v,...` lands here

`make_backend(spec, context)` below resolves `--teacher` strings; `scripted:` is imported
lazily from `t5x_sbs.teacher.scripted` (owned by the experiments stage), which must expose
`make_backend(name: str, context: BackendContext) -> TeacherBackend`.
"""
from __future__ import annotations

import abc
import dataclasses
import importlib
from typing import Any, Callable

from t5x_sbs.records import Example


@dataclasses.dataclass(frozen=True)
class TeacherRequest:
    """One call: the example, the rendered prompt text and the sample index."""

    example: Example
    prompt: str
    sample: int = 0
    # From the prompt template: where to stop (cuts the hallucinated continuation) and
    # whether to ask for JSON {rationale, label} through a response schema.
    stop_sequences: tuple[str, ...] = ()
    json_output: bool = False
    feedback_round: int = 0      # 0 = first ask; k = k-th re-ask after a wrong label


@dataclasses.dataclass
class TeacherResponse:
    """What a backend got back for one request.

    Exactly one of these holds:
      * `text` is set (and `status` None): the runner parses it with
        `t5x_sbs.teacher.parsing.parse_teacher_output` -> ok / unparseable;
      * `rationale` and `label` are set (and `status` None): already parsed -> ok;
      * `status` is "blocked", "truncated" or "failed": `error` says why, `text` keeps any
        partial answer.
    `usage` holds token counts with keys from `records.USAGE_FIELDS`
    (prompt, candidates, cached, thoughts, total); missing keys count as 0.
    """

    text: str | None = None
    rationale: str | None = None
    label: str | None = None
    status: str | None = None
    error: str | None = None
    usage: dict[str, int] = dataclasses.field(default_factory=dict)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # finish reason, model version, ...

    def __post_init__(self):
        if self.status not in (None, "blocked", "truncated", "failed"):
            raise ValueError(f"a backend may only report blocked/truncated/failed, not {self.status!r}")


@dataclasses.dataclass(frozen=True)
class BackendContext:
    """What a backend may need to know beyond the request (from the CLI flags)."""

    dataset: str
    data_dir: str
    split: str
    options: dict[str, str] = dataclasses.field(default_factory=dict)  # from "kind:name,k=v,..."
    seed: int = 0


class TeacherBackend(abc.ABC):
    """A teacher. Subclasses set `teacher` ("kind:model") and implement `generate`."""

    teacher: str = ""
    # False for teachers that ignore our prompt (replay of stored outputs): then the record's
    # prompt_hash identifies their own fixed prompt via `prompt_identity`.
    uses_prompt: bool = True

    # Set by the runner: called with seconds when the server asks to back off (429 Retry-After),
    # so the rate limiter pauses every worker, not just the request the SDK retries.
    on_retry_after: Callable[[float], None] | None = None

    def prompt_identity(self, rendered_prompt_hash: str) -> str:
        """The prompt hash recorded in the store (default: the hash of our template)."""
        return rendered_prompt_hash

    @abc.abstractmethod
    async def generate(self, request: TeacherRequest) -> TeacherResponse:
        """Answers one request. Must not raise for per-example problems: return status
        "failed" with an error instead, so nothing is lost."""

    async def aclose(self) -> None:
        """Releases connections; called once when the run ends."""


def parse_spec(spec: str) -> tuple[str, str, dict[str, str]]:
    """'gemini:gemini-2.5-flash' -> ('gemini', 'gemini-2.5-flash', {});
    'scripted:arith,error_rate=0.2' -> ('scripted', 'arith', {'error_rate': '0.2'})."""
    kind, sep, rest = spec.partition(":")
    if not sep or not kind or not rest:
        raise ValueError(f"--teacher {spec!r}: expected KIND:NAME (gemini:MODEL, replay:palm, scripted:NAME)")
    name, *pairs = rest.split(",")
    options = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise ValueError(f"--teacher {spec!r}: option {pair!r} is not key=value")
        options[key.strip()] = value.strip()
    return kind, name, options


# kind -> module exposing make_backend(name, context); imported only when used.
BACKEND_MODULES = {
    "gemini": "t5x_sbs.teacher.gemini",
    "replay": "t5x_sbs.teacher.replay",
    "scripted": "t5x_sbs.teacher.scripted",
}


def make_backend(spec: str, context: BackendContext, **kwargs: Any) -> TeacherBackend:
    """Builds the backend named by a `--teacher` spec. kwargs go to the module's factory
    (e.g. the Gemini client settings); options after the name go into `context.options`."""
    kind, name, options = parse_spec(spec)
    if kind not in BACKEND_MODULES:
        raise ValueError(f"--teacher {spec!r}: unknown kind {kind!r}; known: {sorted(BACKEND_MODULES)}")
    module = importlib.import_module(BACKEND_MODULES[kind])
    context = dataclasses.replace(context, options={**context.options, **options})
    return module.make_backend(name, context, **kwargs)

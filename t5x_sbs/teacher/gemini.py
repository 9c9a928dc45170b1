"""The Gemini teacher through google-genai: async calls, the SDK's retries, the Batch API.

Authentication is the SDK's: `GEMINI_API_KEY` / `GOOGLE_API_KEY` from the environment, or
Vertex AI with `vertex=True, project, location` (application default credentials). We
never read, pass or print the key ourselves; error texts are still scrubbed of it in case
a server echoes it.

Retries of 408/429/5xx and transport timeouts are `HttpRetryOptions` (tenacity inside the
SDK); `timeout_s` bounds each attempt. Two gaps of the SDK are closed here: a 429's
`Retry-After` pauses the runner's rate limiter (an httpx response hook), and a connection
dropped mid-body (which the SDK does not retry) is retried like a 5xx, with tenacity too. Whatever is left after the retries becomes a
`failed` response with the error kept, never an exception, so the runner loses nothing.
"""
from __future__ import annotations

import asyncio
import dataclasses
import os
from typing import Any

import importlib

import tenacity
from google import genai
from google.genai import errors, types

from t5x_sbs.teacher.backends import BackendContext, TeacherBackend, TeacherRequest, TeacherResponse
from t5x_sbs.teacher.prompting import JSON_SCHEMA

KEY_ENV_VARS = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
BLOCKING_FINISH_REASONS = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII",
                           "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "LANGUAGE"}
# usage_metadata attribute -> records.USAGE_FIELDS name
USAGE_ATTRS = {"prompt_token_count": "prompt", "candidates_token_count": "candidates",
               "cached_content_token_count": "cached", "thoughts_token_count": "thoughts",
               "total_token_count": "total"}
# A connection closed mid-body (headers sent, body cut): transient like a 5xx, but outside the
# SDK's retry predicate (it retries timeouts and connect errors only).
def _dropped_connection_errors() -> tuple[type[Exception], ...]:
    """RemoteProtocolError/ReadError of whichever httpx the SDK uses (httpx or its httpx2 fork)."""
    found = []
    for name in ("httpx", "httpx2"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        found += [getattr(module, cls) for cls in ("RemoteProtocolError", "ReadError") if hasattr(module, cls)]
    return tuple(found)


DROPPED_CONNECTION = _dropped_connection_errors()
BATCH_DONE = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"}


@dataclasses.dataclass(frozen=True)
class GeminiSettings:
    model: str
    base_url: str | None = None       # any compatible endpoint (tests: a loopback server)
    vertex: bool = False
    project: str | None = None
    location: str | None = None
    timeout_s: float = 120.0          # per attempt
    attempts: int = 5                 # including the first
    initial_delay_s: float = 1.0
    max_delay_s: float = 60.0
    temperature: float = 0.0
    max_output_tokens: int = 512
    thinking_budget: int | None = None  # None: the model's default


def redact(text: str) -> str:
    """The message with any API key from the environment replaced."""
    for var in KEY_ENV_VARS:
        key = os.environ.get(var)
        if key and len(key) >= 4:
            text = text.replace(key, "[REDACTED]")
    return text


def usage_dict(usage: Any) -> dict[str, int]:
    if usage is None:
        return {}
    return {name: int(getattr(usage, attr) or 0) for attr, name in USAGE_ATTRS.items()}


def to_teacher_response(response: types.GenerateContentResponse) -> TeacherResponse:
    """Classifies one response: blocked (prompt feedback or a safety finish), truncated
    (MAX_TOKENS), failed (no candidates / no text), else the text for the parser."""
    usage = usage_dict(response.usage_metadata)
    extra: dict[str, Any] = {"model_version": response.model_version} if response.model_version else {}
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason is not None:
        reason = getattr(feedback.block_reason, "value", str(feedback.block_reason))
        return TeacherResponse(status="blocked", error=f"prompt blocked: {reason}", usage=usage, extra=extra)
    if not response.candidates:
        return TeacherResponse(status="failed", error="response has no candidates", usage=usage, extra=extra)
    candidate = response.candidates[0]
    finish = getattr(candidate.finish_reason, "value", candidate.finish_reason)
    extra["finish_reason"] = finish
    parts = (candidate.content.parts or []) if candidate.content else []
    text = "".join(p.text for p in parts if p.text and not p.thought) or None
    if finish in BLOCKING_FINISH_REASONS:
        return TeacherResponse(text=text, status="blocked", error=f"finish reason {finish}", usage=usage, extra=extra)
    if finish == "MAX_TOKENS":
        return TeacherResponse(text=text, status="truncated", error="finish reason MAX_TOKENS", usage=usage, extra=extra)
    if text is None:
        return TeacherResponse(status="failed", error=f"no text in the candidate (finish reason {finish})",
                               usage=usage, extra=extra)
    return TeacherResponse(text=text, usage=usage, extra=extra)


def describe_error(error: BaseException) -> str:
    if isinstance(error, errors.APIError):
        text = f"HTTP {error.code} {error.status or ''}: {error.message or ''}".strip()
    else:
        text = f"{type(error).__name__}: {error}"
    return redact(text)[:2000]


class GeminiTeacher(TeacherBackend):
    def __init__(self, settings: GeminiSettings):
        self.settings = settings
        self.teacher = f"gemini:{settings.model}"
        self._client: genai.Client | None = None
        self._configs: dict[tuple, types.GenerateContentConfig] = {}

    @property
    def client(self) -> genai.Client:
        if self._client is None:
            s = self.settings
            retry = types.HttpRetryOptions(attempts=s.attempts, initial_delay=s.initial_delay_s,
                                           max_delay=s.max_delay_s)
            http = types.HttpOptions(base_url=s.base_url, timeout=int(s.timeout_s * 1000), retry_options=retry,
                                     async_client_args={"event_hooks": {"response": [self._on_response]}})
            if s.vertex:
                self._client = genai.Client(vertexai=True, project=s.project, location=s.location, http_options=http)
            else:
                self._client = genai.Client(http_options=http)
        return self._client

    def config(self, request: TeacherRequest) -> types.GenerateContentConfig:
        """One config per (stops, json), built once: pydantic building costs per-request CPU."""
        key = (request.stop_sequences, request.json_output)
        if key not in self._configs:
            self._configs[key] = self._build_config(*key)
        return self._configs[key]

    def _build_config(self, stop_sequences: tuple[str, ...], json_output: bool) -> types.GenerateContentConfig:
        s = self.settings
        kwargs: dict[str, Any] = dict(temperature=s.temperature, max_output_tokens=s.max_output_tokens,
                                      candidate_count=1)
        if stop_sequences:
            kwargs["stop_sequences"] = list(stop_sequences)
        if json_output:
            kwargs.update(response_mime_type="application/json", response_schema=JSON_SCHEMA)
        if s.thinking_budget is not None:
            kwargs["thinking_config"] = types.ThinkingConfig(thinking_budget=s.thinking_budget)
        return types.GenerateContentConfig(**kwargs)

    async def _on_response(self, response: Any) -> None:
        """A 429 with Retry-After (seconds): every new request start pauses (the runner's limiter),
        and this request's own SDK retry waits as long (the hook returns only then)."""
        if response.status_code != 429:
            return
        try:
            seconds = min(float(response.headers.get("retry-after", "")), self.settings.max_delay_s)
        except ValueError:
            return  # absent, or an HTTP date: the SDK's backoff alone
        if self.on_retry_after is not None:
            self.on_retry_after(seconds)
        await asyncio.sleep(seconds)

    async def generate(self, request: TeacherRequest) -> TeacherResponse:
        s = self.settings
        retry = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(max(1, s.attempts)), reraise=True,
            retry=tenacity.retry_if_exception_type(DROPPED_CONNECTION),
            wait=tenacity.wait_exponential_jitter(initial=s.initial_delay_s, max=s.max_delay_s))
        try:
            async for attempt in retry:
                with attempt:
                    response = await self.client.aio.models.generate_content(
                        model=s.model, contents=request.prompt, config=self.config(request))
        except Exception as e:  # after the retries: keep the error, lose nothing
            return TeacherResponse(status="failed", error=describe_error(e))
        return to_teacher_response(response)

    # -- Batch API -------------------------------------------------------------------------
    async def submit_batch(self, requests: list[TeacherRequest], display_name: str) -> str:
        """Creates one batch job with inlined requests; returns its name."""
        src = [types.InlinedRequest(contents=r.prompt, config=self.config(r),
                                    metadata={"id": r.example.id, "sample": str(r.sample)})
               for r in requests]
        job = await self.client.aio.batches.create(model=self.settings.model, src=src,
                                                   config=types.CreateBatchJobConfig(display_name=display_name))
        return job.name

    async def poll_batch(self, name: str, count: int) -> list[TeacherResponse] | None:
        """None while the job runs; then one response per request, in request order."""
        job = await self.client.aio.batches.get(name=name)
        state = getattr(job.state, "value", job.state)
        if state not in BATCH_DONE:
            return None
        inlined = (job.dest.inlined_responses or []) if job.dest else []
        if state != "JOB_STATE_SUCCEEDED" or len(inlined) != count:
            error = redact(f"batch {name} ended {state} with {len(inlined)} of {count} responses: {job.error}")
            return [TeacherResponse(status="failed", error=error) for _ in range(count)]
        out = []
        for item in inlined:
            if item.response is not None:
                out.append(to_teacher_response(item.response))
            else:
                out.append(TeacherResponse(status="failed", error=redact(f"batch entry error: {item.error}")))
        return out

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aio.aclose()


def make_backend(name: str, context: BackendContext, **settings: Any) -> GeminiTeacher:
    if context.options:
        raise ValueError(f"--teacher gemini:{name}: options {sorted(context.options)} are flags here "
                         "(--timeout, --attempts, --temperature, ...)")
    return GeminiTeacher(GeminiSettings(model=name, **settings))

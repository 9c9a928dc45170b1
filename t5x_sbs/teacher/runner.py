"""The annotation run: examples x samples -> one `TeacherRecord` each in the store.

The same loop serves every backend: bounded concurrency (a pool of workers), a
requests-per-minute limit, parsing with the dataset's rule, feedback re-asks, rationale
capping, and an append after every finished example. Keys already in the store are
skipped (non-ok ones too, unless `retry_failed`), so a re-run after a crash sends no
request for finished examples; at the end the store is made canonical (see `store`).
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import os
import time
from typing import Any, Sequence

from t5x_sbs.teacher.parsing import parse_teacher_output
from t5x_sbs.progress import progress
from t5x_sbs.records import USAGE_FIELDS, Example, TeacherRecord
from t5x_sbs.teacher import ledger
from t5x_sbs.teacher.batch import run_batch
from t5x_sbs.teacher.backends import TeacherBackend, TeacherRequest, TeacherResponse
from t5x_sbs.teacher.feedback import DISAGREES, cap_rationale, feedback_report, label_agrees
from t5x_sbs.teacher.prompting import PromptTemplate
from t5x_sbs.teacher.store import TeacherStore, example_order


@dataclasses.dataclass
class RunOptions:
    concurrency: int = 8
    rpm: float = 0.0                 # requests started per minute; 0 = no limit
    samples: int = 1
    feedback: int = 0                # re-asks after a label that disagrees with gold
    retry_failed: bool = False       # ask again for keys whose record is not ok
    max_rationale_chars: int = 1500  # 0 = no cap
    batch: bool = False              # the backend's Batch API (Gemini) instead of online calls
    batch_size: int = 1000
    poll_interval_s: float = 10.0
    progress: bool = True


@dataclasses.dataclass(frozen=True)
class Job:
    example: Example
    sample: int


class RateLimiter:
    """Spaces request starts at least 60/rpm seconds apart (a smooth rpm limit); `pause` holds
    every start back for a while (a server's 429 Retry-After)."""

    def __init__(self, rpm: float):
        self.interval = 60.0 / rpm if rpm > 0 else 0.0
        self._next = 0.0
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    def pause(self, seconds: float) -> None:
        """No request starts for `seconds` from now (safe to call from the SDK's HTTP thread)."""
        self._paused_until = max(self._paused_until, time.monotonic() + max(0.0, float(seconds)))

    async def wait(self) -> None:
        if not self.interval and time.monotonic() >= self._paused_until:
            return
        async with self._lock:
            now = time.monotonic()
            start = max(now, self._next, self._paused_until)
            self._next = start + self.interval
        await asyncio.sleep(start - now)


def sum_usage(usages: Sequence[dict[str, int]]) -> dict[str, int]:
    return {f: sum(int(u.get(f, 0)) for u in usages) for f in USAGE_FIELDS if any(f in u for u in usages)}


class Runner:
    def __init__(self, backend: TeacherBackend, template: PromptTemplate, store: TeacherStore,
                 options: RunOptions):
        self.backend, self.template, self.store, self.options = backend, template, store, options
        self.prompt_hash = backend.prompt_identity(template.hash)
        self.limiter = RateLimiter(options.rpm)
        backend.on_retry_after = self.limiter.pause
        self.counts: collections.Counter[str] = collections.Counter()
        self.tokens = 0
        self.cost = 0.0
        self.requests = 0
        self.existing: dict = {}
        self.finished: list[TeacherRecord] = []  # kept only for the feedback report
        self._bar = None  # a tqdm bar on a terminal, else progress lines (`t5x_sbs.progress`)

    # -- planning ---------------------------------------------------------------------------
    def key(self, job: Job) -> tuple[str, str, str, int]:
        return (job.example.id, self.backend.teacher, self.prompt_hash, job.sample)

    def plan(self, examples: Sequence[Example], existing: dict) -> list[Job]:
        jobs = [Job(e, s) for e in examples for s in range(self.options.samples)]
        def todo(job: Job) -> bool:
            record = existing.get(self.key(job))
            return record is None or (self.options.retry_failed and record.status != "ok")
        return [j for j in jobs if todo(j)]

    # -- one record -------------------------------------------------------------------------
    def request(self, job: Job, prompt: str, feedback_round: int = 0) -> TeacherRequest:
        return TeacherRequest(example=job.example, prompt=prompt, sample=job.sample,
                              stop_sequences=self.template.stop_sequences,
                              json_output=self.template.json_output, feedback_round=feedback_round)

    def parse(self, dataset: str, text: str) -> tuple[str | None, str | None, str | None]:
        """(rationale, label, problem) of a text answer (JSON answers are rewritten into
        the template's text format first, so one parser rule holds for both)."""
        if self.template.json_output:
            try:
                obj = json.loads(text)
                text = self.template.answer_text(str(obj["rationale"]), str(obj["label"])).lstrip()
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                return None, None, f"bad JSON answer: {type(e).__name__}: {e}"
        try:
            parsed = parse_teacher_output(dataset, text)
        except ValueError as e:  # no rule for this dataset
            return None, None, str(e)
        return parsed.rationale, parsed.label, parsed.problem

    def build_record(self, job: Job, response: TeacherResponse, batch: bool = False) -> TeacherRecord:
        e = job.example
        extra: dict[str, Any] = {"prompt": self.template.style + ("_json" if self.template.json_output else ""),
                                 **response.extra}
        if batch:
            extra["batch"] = True
        fields = dict(id=e.id, dataset=e.dataset, split=e.split, input=e.input, gold=e.gold,
                      teacher=self.backend.teacher, prompt_hash=self.prompt_hash, sample=job.sample,
                      usage=dict(response.usage), raw=response.text, extra=extra)
        if response.status is not None:
            return TeacherRecord(rationale=None, label=None, status=response.status, error=response.error, **fields)
        if response.label is not None:  # the backend parsed it itself
            rationale, label, problem = response.rationale, response.label, None
        else:
            rationale, label, problem = self.parse(e.dataset, response.text or "")
        if problem is not None or not label:
            return TeacherRecord(rationale=rationale, label=label, status="unparseable",
                                 error=problem or "empty label", **fields)
        rationale, capped = cap_rationale((rationale or "").strip(), self.options.max_rationale_chars)
        if capped:
            extra["rationale_capped"] = True
        return TeacherRecord(rationale=rationale, label=label, status="ok", **fields)

    async def call(self, request: TeacherRequest) -> TeacherResponse:
        await self.limiter.wait()
        self.requests += 1
        try:
            return await self.backend.generate(request)
        except Exception as e:  # a backend bug must not lose the example
            return TeacherResponse(status="failed", error=f"{type(e).__name__}: {e}"[:2000])

    async def answer(self, job: Job) -> TeacherRecord:
        prompt = self.template.render(job.example) if self.backend.uses_prompt else ""
        response = await self.call(self.request(job, prompt))
        record, usages = self.build_record(job, response), [response.usage]
        if self.options.feedback and record.status == "ok" and \
                label_agrees(job.example.dataset, job.example.gold, record.label) is False:
            record = await self.re_ask(job, prompt, response, record, usages)
        record.usage = sum_usage(usages)
        if len(usages) > 1:
            record.extra["call_usage"] = usages
        return record

    async def re_ask(self, job: Job, prompt: str, response: TeacherResponse, record: TeacherRecord,
                     usages: list[dict[str, int]]) -> TeacherRecord:
        """Up to `feedback` re-asks naming the gold answer; keeps the first that agrees."""
        first = {"first_label": record.label, "first_rationale": record.rationale}
        previous = response.text or self.template.answer_text(record.rationale or "", record.label or "")
        for k in range(1, self.options.feedback + 1):
            retry_prompt = self.template.feedback_prompt(job.example, prompt, previous)
            response = await self.call(self.request(job, retry_prompt, feedback_round=k))
            usages.append(response.usage)
            candidate = self.build_record(job, response)
            if candidate.status == "ok" and label_agrees(job.example.dataset, job.example.gold, candidate.label):
                candidate.extra["feedback"] = {"rounds": k, "dropped": False, **first}
                return candidate
        record.extra["feedback"] = {"rounds": self.options.feedback, "dropped": True, **first}
        record.status, record.error = "failed", f"{DISAGREES} after {self.options.feedback} feedback rounds"
        return record

    # -- bookkeeping ------------------------------------------------------------------------
    def finish(self, record: TeacherRecord) -> None:
        old = self.existing.get(record.key)
        if old is not None:  # a retried key: what the old answer cost stays on the books
            record.extra["superseded_usage"] = sum_usage([old.usage, old.extra.get("superseded_usage", {})])
            record.extra["superseded_calls"] = ledger.record_calls(old)
            record.extra["superseded_records"] = int(old.extra.get("superseded_records", 0)) + 1
        self.store.append(record)
        if self.options.feedback:
            self.finished.append(record)
        self.counts[record.status] += 1
        self.tokens += int(record.usage.get("total", 0))
        self.cost += ledger.record_cost(record)
        if self._bar is not None:  # postfix first: the update shows it (bar redraw or progress line)
            self._bar.set_postfix(ok=self.counts["ok"], failed=self.counts["failed"],
                                  blocked=self.counts["blocked"], tokens=self.tokens, usd=f"{self.cost:.4f}",
                                  refresh=False)
            self._bar.update(1)

    async def _worker(self, queue: asyncio.Queue) -> None:
        while True:
            job = await queue.get()
            try:
                self.finish(await self.answer(job))
            finally:
                queue.task_done()

    async def run_online(self, jobs: list[Job]) -> None:
        queue: asyncio.Queue = asyncio.Queue()
        for job in jobs:
            queue.put_nowait(job)
        workers = [asyncio.create_task(self._worker(queue)) for _ in range(max(1, self.options.concurrency))]
        all_done = asyncio.create_task(queue.join())
        try:
            # Workers loop forever, so one that ends has raised (a store or bookkeeping fault):
            # surface it instead of waiting on a queue nobody drains.
            done, _ = await asyncio.wait([all_done, *workers], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            for task in (all_done, *workers):
                task.cancel()
            await asyncio.gather(all_done, *workers, return_exceptions=True)

    async def run(self, examples: Sequence[Example]) -> dict[str, Any]:
        """Annotates what is not yet in the store; returns a summary. Holds the store's writer
        lock throughout (a second writer fails before any request)."""
        try:
            with self.store.writing():
                return await self._run_locked(examples)
        finally:
            await self.backend.aclose()

    async def _run_locked(self, examples: Sequence[Example]) -> dict[str, Any]:
        self.existing = existing = self.store.load()
        jobs = self.plan(examples, existing)
        started = time.monotonic()
        self._bar = progress(len(jobs), desc=f"{self.backend.teacher} {self.template.dataset}", unit="ex",
                             disable=not self.options.progress, mininterval=0.5)
        try:
            if self.options.batch:
                await run_batch(self, jobs)
            else:
                await self.run_online(jobs)
        finally:
            self._bar.close()
            self.store.close()
        elapsed = time.monotonic() - started
        lines = self.store.canonicalize(example_order(e.id for e in examples))
        summary = {"examples": len(examples), "skipped": len(examples) * self.options.samples - len(jobs),
                "answered": len(jobs), "requests": self.requests, "statuses": dict(self.counts),
                "tokens": self.tokens, "cost_usd": round(self.cost, 6), "seconds": round(elapsed, 3),
                "requests_per_s": round(self.requests / elapsed, 2) if elapsed > 0 else None,
                "store_lines": lines, "prompt_hash": self.prompt_hash, "store": os.fspath(self.store.path)}
        if self.options.feedback:
            summary["feedback"] = feedback_report(self.finished)
        return summary

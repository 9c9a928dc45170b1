"""`--batch`: the Gemini Batch API (inlined requests) feeding the same store.

Jobs of up to `batch_size` requests are created with `client.batches.create`, polled with
`client.batches.get`, and their responses ingested as records marked `extra.batch` (the
ledger prices them at the batch discount). The names of submitted, not yet ingested jobs
are kept in `<store>.batches.json`, written atomically right after each submission, so a
re-run after a crash polls those jobs instead of paying for them twice.
"""
from __future__ import annotations

import asyncio
import json
import os
from typing import Any, Protocol, Sequence


class BatchRunner(Protocol):
    """What a batch run needs of `runner.Runner` (named structurally: the runner imports us)."""

    backend: Any
    store: Any
    options: Any
    template: Any
    requests: int

    def request(self, job: Any, prompt: str) -> Any: ...
    def build_record(self, job: Any, response: Any, batch: bool = False) -> Any: ...
    def finish(self, record: Any) -> None: ...


def _sidecar(runner: BatchRunner) -> str:
    return runner.store.path + ".batches.json"


def _read_pending(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)["jobs"]
        except (json.JSONDecodeError, KeyError) as e:
            raise ValueError(f"{path}: unreadable batch job list ({e}); it names batch jobs already paid "
                             "for: fix or delete it by hand") from None


def _write_pending(path: str, jobs: list[dict]) -> None:
    if not jobs:
        if os.path.exists(path):
            os.remove(path)
        return
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"jobs": jobs}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


async def run_batch(runner: BatchRunner, jobs: Sequence[Any]) -> None:
    """Submits `jobs` (runner.Job: example, sample) not yet claimed by a pending batch job,
    then polls every pending job and finishes its records through the runner."""
    backend = runner.backend
    if not hasattr(backend, "submit_batch"):
        raise ValueError(f"--batch: teacher {backend.teacher} has no batch API")
    if runner.options.feedback:
        raise ValueError("--batch and --feedback do not combine: run feedback online afterwards")
    path = _sidecar(runner)
    pending = _read_pending(path)
    by_key = {(j.example.id, j.sample): j for j in jobs}
    claimed = {(k[0], k[1]) for p in pending for k in p["keys"]}
    fresh = [j for j in jobs if (j.example.id, j.sample) not in claimed]
    size = max(1, runner.options.batch_size)
    for start in range(0, len(fresh), size):
        chunk = fresh[start:start + size]
        prompts = [runner.template.render(j.example) if backend.uses_prompt else "" for j in chunk]
        requests = [runner.request(j, p) for j, p in zip(chunk, prompts)]
        name = await backend.submit_batch(requests, display_name=f"t5x-sbs {runner.template.dataset} {start}")
        runner.requests += 1
        pending.append({"name": name, "keys": [[j.example.id, j.sample] for j in chunk]})
        _write_pending(path, pending)
    while pending:
        for entry in list(pending):
            keys = [tuple(k) for k in entry["keys"]]
            responses = await backend.poll_batch(entry["name"], len(keys))
            runner.requests += 1
            if responses is None:
                continue
            for (example_id, sample), response in zip(keys, responses):
                job = by_key.get((example_id, sample))
                if job is not None:  # else: finished in an earlier run or not asked for now
                    runner.finish(runner.build_record(job, response, batch=True))
            pending.remove(entry)
            _write_pending(path, pending)
        if pending:
            await asyncio.sleep(runner.options.poll_interval_s)

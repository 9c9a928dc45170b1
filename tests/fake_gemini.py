"""A loopback fake of the Gemini Developer API, for driving the real google-genai SDK.

Speaks the REST shapes the SDK sends with `HttpOptions(base_url=...)`:
  POST /{version}/models/{model}:generateContent
  POST /{version}/models/{model}:batchGenerateContent   (inlined requests)
  GET  /{version}/batches/{id}
and answers with candidates, finish reasons, prompt feedback and usage metadata.

What it answers is decided by a `responder(call) -> Reply`; the helpers below build the
replies tests need, including faults (429/500 errors, slow answers, malformed bodies,
SAFETY, empty candidates, MAX_TOKENS). Every reply that carried usage metadata is logged,
so tests can compare a ledger with what was really sent.

Bounded: the server refuses to outlive `lifetime_s` or serve more than `max_requests`.
Run standalone (for benchmarks): python tests/fake_gemini.py --port 0 --latency 0.2
"""
from __future__ import annotations

import argparse
import dataclasses
import http.server
import itertools
import json
import re
import threading
import time
from typing import Any, Callable

_GENERATE = re.compile(r"^/(v1|v1beta|v1alpha)/models/([^/:]+):(generateContent|batchGenerateContent)$")
_BATCH_GET = re.compile(r"^/(v1|v1beta|v1alpha)/batches/([^/:?]+)$")


@dataclasses.dataclass
class Call:
    """One generateContent request as the server saw it."""

    model: str
    prompt: str                 # all text parts of all contents, joined with "\n"
    body: dict[str, Any]
    attempt: int                # how many earlier calls carried the same prompt
    api_key: str | None


@dataclasses.dataclass
class Reply:
    status: int = 200
    body: Any = None            # JSON-able object, or bytes sent verbatim (malformed bodies)
    delay: float = 0.0          # seconds to sleep before answering
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    drop_mid_body: bool = False  # announce the whole body, send half, close the connection


def count_tokens(text: str) -> int:
    """The fake's tokenizer: whitespace words (deterministic, so tests can predict it)."""
    return len(text.split())


def usage_for(prompt: str, answer: str, thoughts: int = 2, cached: int = 0) -> dict[str, int]:
    p, c = count_tokens(prompt), count_tokens(answer)
    return {"promptTokenCount": p, "candidatesTokenCount": c, "cachedContentTokenCount": cached,
            "thoughtsTokenCount": thoughts, "totalTokenCount": p + c + thoughts}


def reply_text(call: Call, text: str, finish: str = "STOP", delay: float = 0.0) -> Reply:
    body = {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]},
                            "finishReason": finish, "index": 0}],
            "usageMetadata": usage_for(call.prompt, text), "modelVersion": call.model}
    return Reply(200, body, delay)


def reply_safety(call: Call) -> Reply:
    body = {"candidates": [{"finishReason": "SAFETY", "index": 0,
                            "safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT",
                                               "probability": "HIGH", "blocked": True}]}],
            "usageMetadata": usage_for(call.prompt, "", thoughts=0)}
    return Reply(200, body)


def reply_prompt_blocked(call: Call) -> Reply:
    body = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": usage_for(call.prompt, "", thoughts=0)}
    return Reply(200, body)


def reply_empty(call: Call) -> Reply:
    return Reply(200, {"candidates": [], "usageMetadata": usage_for(call.prompt, "", thoughts=0)})


def reply_max_tokens(call: Call, partial: str = "The answer must be something that") -> Reply:
    return reply_text(call, partial, finish="MAX_TOKENS")


def reply_error(code: int, message: str = "injected fault") -> Reply:
    status = {429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 400: "INVALID_ARGUMENT"}
    return Reply(code, {"error": {"code": code, "message": message, "status": status.get(code, "UNKNOWN")}})


def reply_rate_limited(retry_after_s: float) -> Reply:
    reply = reply_error(429, "quota exceeded")
    reply.headers["Retry-After"] = f"{retry_after_s:g}"
    return reply


def reply_dropped(call: Call) -> Reply:
    """A good answer whose connection closes mid-body (a proxy or server reset)."""
    reply = behave(call, "ok")
    reply.drop_mid_body = True
    return reply


def reply_malformed() -> Reply:
    return Reply(200, b'{"candidates": [{"content": {"parts": [{"text": "trunc')


class FakeGemini:
    """The server. Use as a context manager; `url` is the SDK's base_url."""

    def __init__(self, responder: Callable[[Call], Reply], *, latency: float = 0.0,
                 lifetime_s: float = 300.0, max_requests: int = 100_000, batch_polls: int = 2):
        self.responder, self.latency = responder, latency
        self.lifetime_s, self.max_requests, self.batch_polls = lifetime_s, max_requests, batch_polls
        self.lock = threading.Lock()
        self.calls: list[Call] = []          # every generate call (batch entries included)
        self.usage_sent: list[dict[str, int]] = []  # usage of every well-formed, on-time 200 answer
        self.usage_late: list[dict[str, int]] = []  # ... of answers sent after a `delay`
        self.paths: list[str] = []
        self.requests = 0
        self._attempts: dict[str, int] = {}
        self._batches: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self._httpd: http.server.ThreadingHTTPServer | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def __enter__(self) -> "FakeGemini":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, port: int = 0) -> "FakeGemini":
        server = self

        class Handler(_Handler):
            fake = server

        class Server(http.server.ThreadingHTTPServer):
            request_queue_size = 256  # the default 5 drops bursts of connects (1 s SYN retry)

        self._httpd = Server(("127.0.0.1", port), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        self._deadline = threading.Timer(self.lifetime_s, self.stop)  # never outlive a test
        self._deadline.daemon = True
        self._deadline.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            httpd, self._httpd = self._httpd, None
            self._deadline.cancel()
            httpd.shutdown()
            httpd.server_close()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # -- behaviour ------------------------------------------------------------------------
    def _call(self, model: str, body: dict[str, Any], api_key: str | None) -> Call:
        texts = [p.get("text", "") for c in body.get("contents", []) for p in c.get("parts", [])]
        prompt = "\n".join(texts)
        with self.lock:
            attempt = self._attempts.get(prompt, 0)
            self._attempts[prompt] = attempt + 1
            call = Call(model, prompt, body, attempt, api_key)
            self.calls.append(call)
        return call

    def answer(self, model: str, body: dict[str, Any], api_key: str | None) -> Reply:
        reply = self.responder(self._call(model, body, api_key))
        if reply.status == 200 and isinstance(reply.body, dict) and "usageMetadata" in reply.body:
            with self.lock:  # a deliberately late answer arrives after the client gave up
                (self.usage_late if reply.delay else self.usage_sent).append(reply.body["usageMetadata"])
        return reply

    def create_batch(self, model: str, body: dict[str, Any], api_key: str | None) -> dict[str, Any]:
        batch = body.get("batch", {})
        entries = batch.get("inputConfig", {}).get("requests", {}).get("requests", [])
        outputs = []
        for entry in entries:
            reply = self.answer(model, entry.get("request", {}), api_key)
            out: dict[str, Any] = {"metadata": entry.get("metadata")} if entry.get("metadata") else {}
            if reply.status == 200 and isinstance(reply.body, dict):
                out["response"] = reply.body
            else:
                out["error"] = {"code": reply.status, "message": f"injected HTTP {reply.status}"}
            outputs.append(out)
        name = f"batches/fake{next(self._ids)}"
        with self.lock:
            self._batches[name] = {"polls": 0, "outputs": outputs, "model": model,
                                   "displayName": batch.get("displayName", "")}
        return self.batch_state(name, poll=False)

    def batch_state(self, name: str, poll: bool = True) -> dict[str, Any] | None:
        with self.lock:
            job = self._batches.get(name)
            if job is None:
                return None
            job["polls"] += int(poll)
            done = job["polls"] >= self.batch_polls
        meta = {"@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
                "model": f"models/{job['model']}", "displayName": job["displayName"],
                "state": "BATCH_STATE_SUCCEEDED" if done else "BATCH_STATE_RUNNING"}
        if done:
            meta["output"] = {"inlinedResponses": {"inlinedResponses": job["outputs"]}}
        return {"name": name, "metadata": meta, "done": done}


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects
    disable_nagle_algorithm = True  # headers and body go out at once (no 40 ms delayed-ACK stall)
    fake: FakeGemini

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None, drop: bool = False) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        try:
            self.wfile.write(data[: len(data) // 2] if drop else data)
            if drop:
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
        except (BrokenPipeError, ConnectionResetError, OSError):  # client gave up (timeout test)
            pass

    def _admit(self) -> bool:
        fake = self.fake
        with fake.lock:
            fake.requests += 1
            fake.paths.append(f"{self.command} {self.path}")
            over = fake.requests > fake.max_requests
        if over:
            self._send(503, {"error": {"code": 503, "message": "fake server request budget spent"}})
        return not over

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if not self._admit():
            return
        match = _GENERATE.match(self.path.split("?")[0])
        if not match:
            return self._send(404, {"error": {"code": 404, "message": "no such method"}})
        body = json.loads(raw or b"{}")
        key = self.headers.get("x-goog-api-key")
        model, method = match.group(2), match.group(3)
        if method == "batchGenerateContent":
            return self._send(200, self.fake.create_batch(model, body, key))
        reply = self.fake.answer(model, body, key)
        delay = reply.delay + self.fake.latency
        if delay:
            time.sleep(delay)
        self._send(reply.status, reply.body, reply.headers, reply.drop_mid_body)

    def do_GET(self) -> None:
        if not self._admit():
            return
        match = _BATCH_GET.match(self.path.split("?")[0])
        state = self.fake.batch_state(f"batches/{match.group(2)}") if match else None
        if state is None:
            return self._send(404, {"error": {"code": 404, "message": "no such batch"}})
        self._send(200, state)


# -- a scripted scenario for tests: a tiny CQA-shaped dataset and per-example behaviours ---
_QID = re.compile(r"QID(\d+)")


def write_cqa_dataset(root: str, n: int, split: str = "train") -> list[dict[str, Any]]:
    """`root/cqa/cqa_<split>.json` in the paper layout; example i's gold is choice (b)."""
    import os
    rows = [{"id": f"ex{i:04d}", "question": f"QID{i} Where would item number {i} be kept?",
             "choices": [f"wrong{i}", f"right{i}", "garden", "ocean", "attic"], "answer": f"right{i}"}
            for i in range(n)]
    os.makedirs(os.path.join(root, "cqa"), exist_ok=True)
    with open(os.path.join(root, "cqa", f"cqa_{split}.json"), "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return rows


def example_index(call: Call) -> int | None:
    """Which scenario example a prompt asks about (its last QID, after the demonstrations)."""
    found = _QID.findall(call.prompt)
    return int(found[-1]) if found else None


def behave(call: Call, behaviour: str) -> Reply:
    i = example_index(call)
    if behaviour == "ok":
        return reply_text(call, f"Item {i} is kept in its usual place. So the answer is (b) right{i}.")
    if behaviour == "ok_if_told":  # wrong until the prompt names the correct answer
        told = "the correct answer is" in call.prompt
        return behave(call, "ok" if told else "wrong")
    if behaviour == "wrong":
        return reply_text(call, f"Item {i} could be anywhere. So the answer is (a) wrong{i}.")
    if behaviour == "json":
        return reply_text(call, json.dumps({"rationale": f"Item {i} is kept there.", "label": f"(b) right{i}"}))
    if behaviour == "garbage":
        return reply_text(call, "I would rather talk about the weather.")
    if behaviour == "slow":  # answers, but only after the client's timeout
        return reply_text(call, "too late. So the answer is (b) late.", delay=2.0)
    simple = {"safety": reply_safety, "prompt_blocked": reply_prompt_blocked, "empty": reply_empty,
              "max_tokens": reply_max_tokens}
    if behaviour in simple:
        return simple[behaviour](call)
    if behaviour == "malformed":
        return reply_malformed()
    if behaviour == "dropped":
        return reply_dropped(call)
    if behaviour.startswith("429_retry_after_"):
        return reply_rate_limited(float(behaviour.rsplit("_", 1)[1]))
    if behaviour.isdigit():
        return reply_error(int(behaviour))
    raise ValueError(f"unknown behaviour {behaviour!r}")


def scenario_responder(plans: dict[int, list[str]], default: str = "ok") -> Callable[[Call], Reply]:
    """Example i answers plans[i][attempt] (the last entry repeats); others `default`."""
    def responder(call: Call) -> Reply:
        plan = plans.get(example_index(call), [default])
        return behave(call, plan[min(call.attempt, len(plan) - 1)])
    return responder


def fixed_answer_responder(text: str = "Reasoning goes here. So the answer is (a) yes.") -> Callable[[Call], Reply]:
    return lambda call: reply_text(call, text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--lifetime_s", type=float, default=600)
    parser.add_argument("--answer", default="Reasoning goes here. So the answer is (a) yes.")
    args = parser.parse_args()
    fake = FakeGemini(fixed_answer_responder(args.answer), latency=args.latency, lifetime_s=args.lifetime_s)
    fake.start(args.port)
    print(fake.url, flush=True)
    try:
        time.sleep(args.lifetime_s)
    except KeyboardInterrupt:
        pass
    fake.stop()


if __name__ == "__main__":
    main()

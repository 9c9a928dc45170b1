"""`t5x-sbs rationales`: ask a teacher for rationales and labels into a JSONL store.

    t5x-sbs rationales --dataset cqa --data_dir ../shared/data --split train --limit 100 \\
        --teacher gemini:gemini-2.5-flash --prompt few_shot --out cqa_train.jsonl

Re-running the same command resumes: finished examples are not asked again. Prints a
progress bar (stderr) and a one-line JSON summary (stdout).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys

from t5x_sbs.records import Example
from t5x_sbs.teacher import annotation
from t5x_sbs.teacher.runner import RunOptions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--dataset", required=True, help="cqa, esnli, anli1, svamp, asdiv, gsm8k, cose (or a built-in task)")
    add("--data_dir", required=True, help="root of the datasets (e.g. ../shared/data)")
    add("--split", default="train")
    add("--limit", type=int, default=None, help="only the first N examples (after --fraction)")
    add("--fraction", type=float, default=1.0,
        help="annotate the deterministic subset id_fraction(id, 'rationale') < F (the tasks' rationale coverage)")
    add("--teacher", required=True, help="gemini:MODEL | replay:palm | scripted:NAME[,k=v...]")
    add("--prompt", default="few_shot", help="few_shot | zero_shot | a prompt FILE (e.g. from optimize-prompt)")
    add("--json_output", action="store_true", help="zero-shot: ask for JSON {rationale, label} via a response schema")
    add("--out", required=True, help="the JSONL store (appended to, resumable)")
    add("--samples", type=int, default=1, help="answers per example (sample index 0..N-1)")
    add("--concurrency", type=int, default=8)
    add("--rpm", type=float, default=0.0, help="requests per minute limit (0: none)")
    add("--feedback", type=int, default=0, metavar="K", help="re-ask up to K times when the label disagrees with gold")
    add("--retry-failed", "--retry_failed", dest="retry_failed", action="store_true",
        help="ask again for examples whose stored status is not ok")
    add("--max_rationale_chars", type=int, default=1500, help="cap rationales at a sentence end (0: no cap)")
    add("--batch", action="store_true", help="use the Gemini Batch API (half price, slow)")
    add("--batch_size", type=int, default=1000)
    add("--poll_interval", type=float, default=30.0, help="seconds between batch polls")
    add("--no_progress", action="store_true")
    add("--seed", type=int, default=0)
    add_gemini_arguments(parser)


def add_gemini_arguments(parser: argparse.ArgumentParser) -> None:
    gemini = parser.add_argument_group("gemini (google-genai; key from GEMINI_API_KEY / GOOGLE_API_KEY)")
    gemini.add_argument("--base_url", default=None, help="a compatible endpoint instead of Google's")
    gemini.add_argument("--vertex", action="store_true", help="Vertex AI with application default credentials")
    gemini.add_argument("--project", default=None)
    gemini.add_argument("--location", default=None)
    gemini.add_argument("--timeout", type=float, default=120.0, help="seconds per attempt")
    gemini.add_argument("--attempts", type=int, default=5, help="HTTP attempts incl. the first (408/429/5xx, timeouts)")
    gemini.add_argument("--retry_initial_delay", type=float, default=1.0)
    gemini.add_argument("--retry_max_delay", type=float, default=60.0)
    gemini.add_argument("--temperature", type=float, default=0.0)
    gemini.add_argument("--max_output_tokens", type=int, default=512)
    gemini.add_argument("--thinking_budget", type=int, default=None)


def select(examples: list[Example], fraction: float, limit: int | None) -> list[Example]:
    """`annotation.select_examples`, a bad --fraction ending the command with one line."""
    try:
        return annotation.select_examples(examples, fraction, limit)
    except ValueError as e:
        raise SystemExit(f"rationales: {e}") from None


def gemini_settings(args: argparse.Namespace) -> annotation.GeminiSettings:
    return annotation.GeminiSettings(
        base_url=args.base_url, vertex=args.vertex, project=args.project, location=args.location,
        timeout_s=args.timeout, attempts=args.attempts, initial_delay_s=args.retry_initial_delay,
        max_delay_s=args.retry_max_delay, temperature=args.temperature,
        max_output_tokens=args.max_output_tokens, thinking_budget=args.thinking_budget)


def job_from_args(args: argparse.Namespace) -> annotation.AnnotationJob:
    """The typed job of the parsed flags (also how the demo reads its `--teacher_args`)."""
    options = RunOptions(concurrency=args.concurrency, rpm=args.rpm, samples=args.samples, feedback=args.feedback,
                         retry_failed=args.retry_failed, max_rationale_chars=args.max_rationale_chars,
                         batch=args.batch, batch_size=args.batch_size, poll_interval_s=args.poll_interval,
                         progress=not args.no_progress)
    ask = annotation.AskSettings(prompt=args.prompt, json_output=args.json_output, limit=args.limit,
                                 fraction=args.fraction, options=options, gemini=gemini_settings(args))
    return annotation.AnnotationJob(dataset=args.dataset, data_dir=args.data_dir, split=args.split,
                                    teacher=args.teacher, out=args.out, seed=args.seed, ask=ask)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:  # bad data, templates, flags or store lines: one clear line naming file/line/field
        summary = annotation.annotate(job_from_args(args))
    except ValueError as e:  # DataError, RecordError, PromptError are ValueErrors
        raise SystemExit(f"rationales: {e}") from None
    print(json.dumps(summary, sort_keys=True))
    return 0

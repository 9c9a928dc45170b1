"""Tokens, cost, statuses and quality of a teacher store (`t5x-sbs ledger FILE --json`).

Every record carries the usage metadata of its calls (summed over feedback re-asks, each
call kept in `extra.call_usage`; usage of records a `--retry-failed` run superseded is
carried in `extra.superseded_usage`), so the ledger's totals are what the API reported.
Costs come from a price table (USD per 1M tokens per model, `prices.json`, overridable)
with the batch discount for records made through the Batch API.
"""
from __future__ import annotations

import collections
import functools
import json
import os
import statistics
from typing import Any, Iterable

from t5x_sbs.records import USAGE_FIELDS, InputError, TeacherRecord
from t5x_sbs.teacher.feedback import feedback_report, label_agrees, words
from t5x_sbs.teacher.store import read_store

DEFAULT_PRICES = os.path.join(os.path.dirname(__file__), "prices.json")


@functools.lru_cache(maxsize=8)
def load_prices(path: str = DEFAULT_PRICES) -> dict[str, Any]:
    """The price table; a missing, non-JSON or ill-shaped file raises InputError naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            table = json.load(f)
    except OSError as e:
        raise InputError(path, None, None, f"cannot read the price table ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise InputError(path, None, None, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise InputError(path, e.lineno, None, f"invalid JSON ({e.msg} at column {e.colno})") from None
    models = table.get("models", {}) if isinstance(table, dict) else None
    if not isinstance(models, dict):
        raise InputError(path, None, "models", "expected an object {model: {input, output}} (USD per 1M tokens)")
    for model, price in models.items():
        for field in ("input", "output"):
            value = price.get(field) if isinstance(price, dict) else None
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise InputError(path, None, f"models.{model}.{field}", "must be a number >= 0 (USD per 1M tokens)")
    return table


def model_price(teacher: str, table: dict[str, Any]) -> dict[str, float] | None:
    """The price of 'gemini:MODEL' by longest model-name prefix; None if unpriced."""
    model = teacher.partition(":")[2]
    matches = [m for m in table.get("models", {}) if model.startswith(m)]
    return table["models"][max(matches, key=len)] if matches else None


def usage_cost(usage: dict[str, int], price: dict[str, float] | None, discount: float = 1.0) -> float:
    if not price:
        return 0.0
    cached = int(usage.get("cached", 0))
    prompt = max(0, int(usage.get("prompt", 0)) - cached)
    output = int(usage.get("candidates", 0)) + int(usage.get("thoughts", 0))
    dollars = prompt * price["input"] + cached * price.get("cached", price["input"]) + output * price["output"]
    return dollars / 1e6 * discount


def spent_usage(record: TeacherRecord) -> dict[str, int]:
    """This record's usage plus that of the records it superseded."""
    old = record.extra.get("superseded_usage") or {}
    return {f: int(record.usage.get(f, 0)) + int(old.get(f, 0)) for f in USAGE_FIELDS}


def record_calls(record: TeacherRecord) -> int:
    """API calls made for this key: this record's (feedback re-asks included) and those of
    the records it superseded (`--retry-failed`)."""
    own = len(record.extra.get("call_usage") or [record.usage])
    return own + int(record.extra.get("superseded_calls", 0))


def record_cost(record: TeacherRecord, prices: str = DEFAULT_PRICES) -> float:
    table = load_prices(prices)
    discount = table.get("batch_discount", 0.5) if record.extra.get("batch") else 1.0
    return usage_cost(spent_usage(record), model_price(record.teacher, table), discount)


def _mean(values: list[float]) -> float:
    return round(statistics.fmean(values), 3) if values else 0.0


def summarize(records: Iterable[TeacherRecord], prices: str = DEFAULT_PRICES) -> dict[str, Any]:
    """Totals, per-status counts, label accuracy vs gold, rationale length, per prompt style."""
    records = list(records)
    totals = collections.Counter()
    groups: dict[str, dict[str, Any]] = {}
    for r in records:
        usage = spent_usage(r)
        totals.update(usage)
        style = r.extra.get("prompt", "?")
        g = groups.setdefault(f"{r.teacher} {style} {r.prompt_hash}", {
            "teacher": r.teacher, "prompt": style, "prompt_hash": r.prompt_hash, "examples": 0,
            "calls": 0, "prompt_tokens": 0, "total_tokens": 0, "cost_usd": 0.0})
        g["examples"] += 1
        g["calls"] += record_calls(r)
        g["prompt_tokens"] += usage["prompt"]
        g["total_tokens"] += usage["total"]
        g["cost_usd"] += record_cost(r, prices)
    for g in groups.values():
        g["prompt_tokens_per_example"] = round(g["prompt_tokens"] / g["examples"], 2)
        g["cost_usd"] = round(g["cost_usd"], 6)
    ok = [r for r in records if r.status == "ok"]
    judged = [label_agrees(r.dataset, r.gold, r.label) for r in ok]
    judged = [j for j in judged if j is not None]
    replaced = [r.extra.get("superseded_usage") or {} for r in records]
    summary = {
        "records": len(records),
        "calls": sum(record_calls(r) for r in records),
        # Stores written before `superseded_records` existed: one replaced answer per record.
        "replaced_answers": sum(int(r.extra.get("superseded_records", bool(r.extra.get("superseded_usage"))))
                                for r in records),
        "replaced_tokens": sum(int(u.get("total", 0)) for u in replaced),
        "statuses": dict(collections.Counter(r.status for r in records)),
        "tokens": {f: int(totals[f]) for f in USAGE_FIELDS},
        "cost_usd": round(sum(g["cost_usd"] for g in groups.values()), 6),
        "label_accuracy": round(sum(judged) / len(judged), 4) if judged else None,
        "label_accuracy_n": len(judged),
        "mean_rationale_words": _mean([words(r.rationale) for r in ok]),
        "mean_rationale_chars": _mean([len(r.rationale or "") for r in ok]),
        "groups": list(groups.values()),
        "prompt_styles": _styles(groups.values()),
    }
    if any(r.extra.get("feedback") for r in records):
        summary["feedback"] = feedback_report(records)
    return summary


def _styles(groups: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Prompt tokens per example by prompt style, and the few-shot / zero-shot ratio."""
    per: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    for g in groups:
        style = g["prompt"].removesuffix("_json")
        per[style][0] += g["prompt_tokens"]
        per[style][1] += g["examples"]
    out: dict[str, Any] = {s: {"prompt_tokens_per_example": round(t / n, 2)} for s, (t, n) in per.items() if n}
    few, zero = out.get("few_shot"), out.get("zero_shot")
    if few and zero and zero["prompt_tokens_per_example"]:
        out["few_over_zero"] = round(few["prompt_tokens_per_example"] / zero["prompt_tokens_per_example"], 2)
    return out


def read_stores(paths: Iterable[str]) -> tuple[list[TeacherRecord], list[str]]:
    """The records of every store by the reading rule, and a note per torn last line."""
    records: list[TeacherRecord] = []
    notes = []
    for path in paths:
        if not os.path.isfile(path):
            raise InputError(path, None, None, "no such file" if not os.path.exists(path) else "not a file")
        contents = read_store(path)
        records.extend(contents.records.values())
        if contents.torn_line is not None:
            notes.append(f"{path}:{contents.torn_line}: torn last line (an interrupted write) not counted; "
                         "the teacher's resume repairs it")
    return records, notes

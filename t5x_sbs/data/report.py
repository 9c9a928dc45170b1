"""Examples, teacher agreement and parse failures of a dataset split (`t5x-sbs data-report`).

The teacher is the paper's stored PaLM outputs (replay) unless `--teacher_file` names a store
of `TeacherRecord`s, read by the tasks' rule (`data.store_reading`; `--teacher_name`,
`--prompt_hash`, `--samples` as gin `tasks.config.teacher_reading`). Broken data (misaligned
outputs, duplicate ids, unknown splits, bad lines) fails with exit code 2. With several samples
per example it prints how often the ok samples agree and the vote's label accuracy vs gold. Agreement is the teacher's label against the gold label, in percent:
- SVAMP/ASDiv compare equations by value (`metrics.equation_equal`, no eval), GSM8K by number;
- NLI compares the parsed class;
- CQA (and CoS-E) count the teacher right when its final answer sentence names the gold choice
  (case-insensitive), which is the agreement the data MANIFEST reports (80.1% on test);
  `teacher_label_exact_match` is the stricter paper-code measure (parsed label == gold).
"""
from __future__ import annotations

import collections
import statistics

import sentencepiece as spm

from t5x_sbs import metrics
from t5x_sbs.data import sources
from t5x_sbs.teacher import store_reading
from t5x_sbs.teacher import parsing
from t5x_sbs.teacher import aligned_outputs


def _label_correct(dataset: str, output: parsing.TeacherOutput) -> bool:
    gold, parsed = output.example.gold, output.parsed
    if dataset in ("cqa", "cose") and output.raw:
        tail = output.raw.split("Q:")[0].split("So the answer is")[-1]
        return "So the answer is" in output.raw and gold.lower() in tail.lower()
    if not parsed.ok:
        return False
    return _exact(dataset, gold, parsed.label)


def _exact(dataset: str, gold: str, label: str | None) -> bool:
    return label is not None and metrics.labels_equal(dataset, gold, label, strict_text=True)


def build_report(dataset: str, data_dir: str, split: str, teacher_file: str | None = None,
                 spm_path: str | None = None, reading: store_reading.TeacherReading | None = None) -> dict:
    examples = sources.load_examples(dataset, data_dir, split)
    if teacher_file or dataset in sources.PALM_DATASETS:  # broken teacher data fails the report
        outputs = aligned_outputs.teacher_outputs(dataset, data_dir, split, teacher_file, require_all=False, reading=reading)
    else:  # GSM8K/ASDiv: no stored PaLM outputs
        outputs, teacher_file = [], f"none ({dataset} has no stored PaLM outputs; give --teacher_file)"
    count_tokens = _token_counter(spm_path)
    with_gold = [o for o in outputs if o.example.gold is not None]
    ok = [o for o in outputs if o.parsed.ok]
    statuses = collections.Counter(o.parsed.status for o in outputs)
    problems = collections.Counter(o.parsed.problem for o in outputs if not o.parsed.ok)
    report = {
        "dataset": dataset,
        "split": split,
        "teacher": teacher_file or "replay:palm-540b",
        "examples": len(examples),
        "teacher_records": len(outputs),
        "missing_teacher_records": len(examples) - len(outputs),
        "teacher_label_accuracy": _percent(sum(_label_correct(dataset, o) for o in with_gold), len(with_gold)),
        "teacher_label_exact_match": _percent(
            sum(o.parsed.ok and _exact(dataset, o.example.gold, o.parsed.label) for o in with_gold), len(with_gold)),
        "parse_failures": len(outputs) - len(ok),
        "statuses": dict(statuses),
        "failure_reasons": dict(problems.most_common(10)),
        "mean_rationale_tokens": round(statistics.fmean([count_tokens(o.parsed.rationale or "") for o in ok]), 2)
        if ok else 0.0,
        "rationale_token_unit": "sentencepiece" if spm_path else "whitespace",
        "mean_input_words": round(statistics.fmean([len(e.text.split()) for e in examples]), 2) if examples else 0.0,
        "samples_mode": (reading or store_reading.TeacherReading()).samples,
        "rationale_rows": sum(len(o.rationales()) for o in outputs),
        **store_reading.agreement(outputs),
    }
    return report


def _percent(hits: int, total: int) -> float | None:
    return round(100.0 * hits / total, 2) if total else None


def _token_counter(spm_path: str | None):
    if not spm_path:
        return lambda text: len(text.split())
    processor = spm.SentencePieceProcessor(model_file=spm_path)
    return lambda text: len(processor.encode(text))

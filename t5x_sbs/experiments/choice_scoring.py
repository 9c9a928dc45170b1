"""Rank classification of multiple-choice students (CQA): each answer choice is scored by the
student's log-likelihood after the label prefix, and the likeliest choice is its answer (how T5's
evaluations score multiple-choice tasks). A diagnosis beside the demo's greedy accuracy: a student
that does not yet write one of the choices when it generates can still rank them, so this measures
what it has learned without needing it to copy a choice. Models run through their Hugging Face
export (`transformers`), the artifact users deploy.

    python -m t5x_sbs.experiments.choice_scoring --demo_dir runs/demo_cqa_d64 --data_dir ../shared/data

prints per method the rank accuracy (mean ± 95 % CI over seeds), how often greedy decoding wrote
one of the choices, and each step-by-step method minus the standard one on the same labels, paired
over the test questions; writes DEMO_DIR/choice_scoring.json.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from typing import Sequence

import numpy as np

from t5x_sbs.convert.hf_export import export_hf
from t5x_sbs.experiments import runner, stats
from t5x_sbs.experiments.demo import COMPARISONS, compare
from t5x_sbs.tasks import config as task_config
from t5x_sbs.teacher import annotation


def choice_log_likelihoods(model, tokenizer, prompts: Sequence[str], choices: Sequence[str]) -> np.ndarray:
    """Per (prompt, choice) pair: the sum of the log-probabilities of the choice's tokens (and its
    EOS) after the prompt."""
    import torch

    encoded = tokenizer(list(prompts), return_tensors="pt", padding=True)
    labels = tokenizer(list(choices), return_tensors="pt", padding=True).input_ids
    labels[labels == tokenizer.pad_token_id] = -100
    with torch.no_grad():
        logits = model(**encoded, labels=labels).logits
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    picked = log_probs.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * (labels >= 0)).sum(dim=-1).numpy()


def rank_correct(model, tokenizer, examples, prefix: str, batch_examples: int = 32) -> np.ndarray:
    """1.0 where the likeliest choice is the gold answer, per example (in order)."""
    out = []
    for start in range(0, len(examples), batch_examples):
        batch = examples[start:start + batch_examples]
        pairs = [(prefix + e.text, choice) for e in batch for choice in e.input["choices"]]
        scores = choice_log_likelihoods(model, tokenizer, *zip(*pairs))
        offset = 0
        for example in batch:
            choices = list(example.input["choices"])
            best = choices[int(np.argmax(scores[offset:offset + len(choices)]))]
            out.append(float(best == example.gold))
            offset += len(choices)
    return np.asarray(out)


def wrote_a_choice(model_dir: str, examples) -> float:
    """Share of the trainer's greedy test predictions (in test order) that are one of their
    question's choices."""
    prefix = task_config.prefixes()["label"]

    def key(text: str) -> str:  # the task folds newlines into spaces; a long input is cut short
        return " ".join(text.removeprefix(prefix).split())

    with open(os.path.join(model_dir, "predictions_test.jsonl"), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    wrong = [i for i, (row, e) in enumerate(zip(rows, examples)) if not key(e.text).startswith(key(row["input"]))]
    if wrong or not rows or len(rows) != len(examples):
        raise ValueError(f"{model_dir}/predictions_test.jsonl: {len(rows)} predictions for {len(examples)} test "
                         f"questions, {len(wrong)} not of the question in their place (first: line {wrong[:1]})")
    return float(np.mean([row["prediction"].strip() in e.input["choices"] for row, e in zip(rows, examples)]))


def score_student(row: dict, examples, spm_path: str) -> dict:
    import transformers

    with tempfile.TemporaryDirectory() as hf_dir:
        export_hf(runner.best_step_dir(row["model_dir"]), hf_dir, vocab=spm_path)
        model = transformers.T5ForConditionalGeneration.from_pretrained(hf_dir).eval()
        tokenizer = transformers.AutoTokenizer.from_pretrained(hf_dir)
        correct = rank_correct(model, tokenizer, examples, task_config.prefixes()["label"])
    return {"method": row["method"], "seed": row["seed"], "rank_correct": correct.tolist(),
            "rank_accuracy": float(correct.mean()), "greedy_accuracy": row["test_accuracy"],
            "greedy_wrote_a_choice": wrote_a_choice(row["model_dir"], examples)}


def report(scored: list[dict]) -> list[str]:
    by_method: dict[str, list[dict]] = {}
    for row in scored:
        by_method.setdefault(row["method"], []).append(row)
    lines = ["| method | rank accuracy % | greedy accuracy % | greedy wrote a choice % |", "|---|---:|---:|---:|"]
    for method, rows in by_method.items():
        cells = [stats.mean_ci([r[k] for r in rows]) for k in ("rank_accuracy", "greedy_accuracy",
                                                                "greedy_wrote_a_choice")]
        lines.append(f"| {method} | " + " | ".join(str(c) for c in cells) + " |")
    for a, b, why in COMPARISONS:
        diff = compare(scored, a, b, correct="rank_correct")
        if diff is not None:
            lines.append(f"- rank accuracy, {a} − {b} ({why}): {diff}")
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo_dir", required=True, help="a finished `t5x-sbs demo --dataset cqa` out_dir")
    parser.add_argument("--data_dir", required=True, help="the demo's --data_dir")
    args = parser.parse_args(argv)
    with open(os.path.join(args.demo_dir, "results.json"), encoding="utf-8") as f:
        rows = json.load(f)["rows"]
    dataset = rows[0]["dataset"]
    examples = annotation.load_examples(dataset, args.data_dir, "test")
    if not all(isinstance(e.input, dict) and "choices" in e.input for e in examples):
        raise SystemExit(f"{dataset}: rank classification needs multiple-choice examples (input['choices'])")
    spm_path = os.path.join(rows[0]["model_dir"], "spiece.model")
    scored = [score_student(row, examples, spm_path) for row in rows]
    lines = report(scored)
    print("\n".join(lines))
    with open(os.path.join(args.demo_dir, "choice_scoring.json"), "w", encoding="utf-8") as f:
        json.dump({"rows": scored, "report": lines}, f, indent=1)


if __name__ == "__main__":
    main()

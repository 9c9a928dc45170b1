"""The real run loop on two JAX processes through `launch/local.sh --processes=2` (gloo on
127.0.0.1), against one process: the step-by-step recipe (gin/runs/sbs.gin) with in-training
decode evaluation trains to the end, sees the same global batches (per-step losses equal), both
hosts report the same validation metrics and best step, SIGTERM + resume equals an uninterrupted
run, eval and infer give one answer with every prediction written; FSDP and FSDP+TP on 2 x 2
devices finish too; length-bucketed batches give one process's losses. A missing peer fails
within the start-up timeout, naming it."""
from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest
import sentencepiece  # noqa: F401  (the vocabulary fixture)

from t5x_sbs.data.vocab import dataset_texts, train_sentencepiece
from ports import free_port_pair

pytestmark = [pytest.mark.distributed, pytest.mark.shared_data]
REPO = pathlib.Path(__file__).resolve().parents[1]
STEPS, LOSS_RTOL = 30, 1e-5
RUN_TIMEOUT_S = 600
TINY = ["T5Config.vocab_size=256", "T5Config.d_model=32", "T5Config.d_kv=8", "T5Config.d_ff=64",
        "T5Config.num_heads=2"]


@pytest.fixture(scope="module")
def vocabulary(shared_data, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("spm") / "svamp.model")
    train_sentencepiece(dataset_texts("svamp", str(shared_data)), path, vocab_size=256)
    return path


def _command(model_dir, shared_data, vocabulary, *, processes=1, devices=1, mode="train", steps=STEPS,
             extra=()) -> list[str]:
    gin = ["--gin_file=gin/models/t5_1_1/tiny.gin", "--gin_file=gin/runs/sbs.gin",
           *[f"--gin.{b}" for b in TINY], "--gin.MIXTURE_OR_TASK_NAME='svamp_sbs_llm'",
           f"--gin.DATA_DIR='{shared_data}'", f"--gin.SPM_PATH='{vocabulary}'", f"--gin.TRAIN_STEPS={steps}",
           "--gin.TASK_FEATURE_LENGTHS={'inputs': 64, 'targets': 32}", "--gin.BATCH_SIZE=8",
           "--gin.INFER_EVAL_EVERY=10", "--gin.EVAL_EVERY=5", "--gin.RunConfig.log_every=1",
           "--gin.RunConfig.eval_batches=2", "--gin.RunConfig.test_batches=2",
           "--gin.OptimizerConfig.learning_rate=0.01", *extra]
    return ["bash", "launch/local.sh", f"--processes={processes}", f"--devices={devices}",
            f"--port={free_port_pair()}", f"--run_mode={mode}", f"--model_dir={model_dir}", *gin]


def _run(args, log: pathlib.Path, *, check=True) -> str:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("XLA_FLAGS", None)  # local.sh sets the device count per process
    with open(log, "w") as f:
        proc = subprocess.run(args, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT_S)
    text = log.read_text()
    if check:
        assert proc.returncode == 0, f"{' '.join(args)}\nexit {proc.returncode}:\n{text[-4000:]}"
    return text


def _losses(model_dir) -> dict[int, float]:
    lines = [json.loads(line) for line in open(pathlib.Path(model_dir) / "metrics.jsonl")]
    return {line["step"]: line["loss"] for line in lines if "loss" in line and "learning_rate" in line}


def _validation_lines(text: str) -> dict[int, set[str]]:
    """process id -> its logged validation lines ('[step] validation/...')."""
    out: dict[int, set[str]] = {}
    for match in re.finditer(r"\[process (\d)/2\].*?(\[\d+\] validation/\S.*)$", text, re.M):
        out.setdefault(int(match.group(1)), set()).add(match.group(2).strip())
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shared_data, vocabulary):
    """One uninterrupted 2-process run and its 1-process twin (same global batch and seed)."""
    root = tmp_path_factory.mktemp("multihost")
    out = {"root": root}
    for name, processes in (("two", 2), ("one", 1)):
        out[name] = root / name
        out[f"{name}_log"] = _run(_command(out[name], shared_data, vocabulary, processes=processes),
                                  root / f"{name}.log")
    return out


def test_two_processes_train_on_the_same_batches_as_one(runs):
    two, one = _losses(runs["two"]), _losses(runs["one"])
    assert sorted(two) == sorted(one) == list(range(1, STEPS + 1))
    for step in one:
        assert two[step] == pytest.approx(one[step], rel=LOSS_RTOL), f"step {step}: {two[step]} vs {one[step]}"


def test_both_hosts_report_the_same_validation_and_best_step(runs):
    per_host = _validation_lines(runs["two_log"])
    assert set(per_host) == {0, 1} and per_host[0] == per_host[1], per_host
    assert any("validation/accuracy" in line for line in per_host[0])
    results = {name: json.loads((runs[name] / "test_results.json").read_text()) for name in ("two", "one")}
    assert results["two"]["best_step"] == results["one"]["best_step"]
    assert results["two"]["test"]["accuracy"] == results["one"]["test"]["accuracy"]
    assert results["two"]["test"]["loss"] == pytest.approx(results["one"]["test"]["loss"], rel=1e-4)


def test_sigterm_and_resume_on_two_processes_equal_the_uninterrupted_run(runs, shared_data, vocabulary):
    model_dir = runs["root"] / "preempted"
    args = _command(model_dir, shared_data, vocabulary, processes=2, extra=["--gin.CHECKPOINT_EVERY=1000"])
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    with open(runs["root"] / "preempted.log", "w") as f:
        proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + RUN_TIMEOUT_S
        metrics = model_dir / "metrics.jsonl"
        while time.monotonic() < deadline and proc.poll() is None:  # SIGTERM mid-run, after step 12
            if metrics.exists() and max(_losses(model_dir) or [0]) >= 12:
                break
            time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGTERM)  # both workers, as a pod's preemption would
        proc.wait(timeout=120)
    stopped = max(int(p.name) for p in model_dir.iterdir() if p.name.isdigit())
    assert 12 <= stopped < STEPS, f"stopped at {stopped}"
    _run(_command(model_dir, shared_data, vocabulary, processes=2), runs["root"] / "resumed.log")
    resumed, uninterrupted = _losses(model_dir), _losses(runs["two"])
    for step in range(1, STEPS + 1):
        assert resumed[step] == pytest.approx(uninterrupted[step], rel=LOSS_RTOL), step


@pytest.mark.parametrize("mode", ["eval", "infer"])
def test_eval_and_infer_on_two_processes_equal_one(runs, shared_data, vocabulary, mode):
    outputs = {}
    for processes in (2, 1):
        out_dir = runs["root"] / f"{mode}_{processes}"
        extra = [f"--gin.EvalConfig.checkpoint_path='{runs['one']}'", "--gin.BATCH_SIZE=32"]
        text = _run(_command(out_dir, shared_data, vocabulary, processes=processes, mode=mode, extra=extra),
                    runs["root"] / f"{mode}_{processes}.log")
        if mode == "eval":
            printed = [json.loads(line) for line in text.splitlines() if line.startswith('{"checkpoint"')]
            assert len(printed) == processes and all(p == printed[0] for p in printed), printed  # one answer
            outputs[processes] = json.loads((out_dir / "eval_test.json").read_text())
        else:
            outputs[processes] = (out_dir / "predictions_test.jsonl").read_text().splitlines()
    if mode == "eval":
        assert outputs[2]["accuracy"] == outputs[1]["accuracy"]
        assert outputs[2]["loss"] == pytest.approx(outputs[1]["loss"], rel=1e-5)
    else:
        test_size = 200  # SVAMP test (../shared/data/MANIFEST.md)
        assert len(outputs[1]) == len(outputs[2]) == test_size
        for line_two, line_one in zip(outputs[2], outputs[1]):  # the same examples, in input order
            two, one = json.loads(line_two), json.loads(line_one)
            assert {k: two[k] for k in ("input", "prediction", "target")} == {
                k: one[k] for k in ("input", "prediction", "target")}
            assert two["score"] == pytest.approx(one["score"], rel=1e-5)  # the batch split differs


@pytest.mark.parametrize("preset", ["fsdp", "fsdp_tp"])
def test_fsdp_presets_on_two_processes_of_two_devices_finish(runs, shared_data, vocabulary, preset):
    model_dir = runs["root"] / preset
    extra = [f"--gin_file=gin/partitioning/{preset}.gin"]
    _run(_command(model_dir, shared_data, vocabulary, processes=2, devices=2, steps=10, extra=extra),
         runs["root"] / f"{preset}.log")
    losses, reference = _losses(model_dir), _losses(runs["one"])
    for step in range(1, 11):  # another mesh, another reduction order: float tolerance only
        assert losses[step] == pytest.approx(reference[step], rel=1e-4), step
    assert json.loads((model_dir / "test_results.json").read_text())["test"]["accuracy"] >= 0


def test_length_buckets_on_two_processes_equal_one(tmp_path, shared_data, vocabulary):
    """Shared encoder in length buckets: batch shapes change from step to step, and both hosts must
    cut and pad every global batch alike (then in-training decode evaluation, as above)."""
    extra = ["--gin.LOSS_MODE='shared_encoder'", "--gin.RunConfig.length_bucket_window=4",
             "--gin.TASK_FEATURE_LENGTHS={'inputs': 128, 'targets': 64}"]  # inputs vary below 128
    losses = {}
    for processes in (2, 1):
        model_dir = tmp_path / f"buckets_{processes}"
        _run(_command(model_dir, shared_data, vocabulary, processes=processes, steps=12, extra=extra),
             tmp_path / f"buckets_{processes}.log")
        losses[processes] = _losses(model_dir)
    assert sorted(losses[2]) == sorted(losses[1]) == list(range(1, 13))
    for step in losses[1]:
        assert losses[2][step] == pytest.approx(losses[1][step], rel=LOSS_RTOL), step
    lines = [json.loads(line) for line in open(tmp_path / "buckets_1" / "metrics.jsonl")]
    tokens = {round(x["tokens_per_second"] * x["seconds_per_step"]) for x in lines if "tokens_per_second" in x}
    assert len(tokens) > 1, tokens  # the batch shape did change between steps


def test_a_missing_peer_fails_within_the_timeout_naming_it(tmp_path):
    port = free_port_pair()
    env = {**os.environ, "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}", "JAX_NUM_PROCESSES": "2",
           "JAX_PROCESS_ID": "0", "JAX_INITIALIZATION_TIMEOUT": "3", "JAX_PLATFORMS": "cpu"}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "t5x_sbs.main", "--gin_file=gin/runs/sbs.gin"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"processes [1] of 2 did not join the coordinator at 127.0.0.1:{port} within 3 s" in proc.stderr
    assert "Traceback" not in proc.stderr and time.monotonic() - start < 60
    env["JAX_PROCESS_ID"] = "1"  # and a worker whose coordinator never comes
    proc = subprocess.run([sys.executable, "-m", "t5x_sbs.main", "--gin_file=gin/runs/sbs.gin"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "process 1 of 2 could not reach the coordinator (process 0)" in proc.stderr

"""Pretraining is a run mode of the same trainer (gin/runs/pretrain.gin), end to end on a tiny
model, in process: pretrain on your own text (text_span_corruption, vocabulary trained by the
run with 100 sentinels) -> the run resumes -> a step-by-step run starts from it with
INITIAL_CHECKPOINT_PATH and reuses its spiece.model -> `t5x-sbs convert --to hf` exports it ->
continued pretraining starts from that HF dir."""
import json
import pathlib

import gin
import numpy as np
import pytest

from t5x_sbs import checkpoints, cli
from t5x_sbs.checkpoints import model_files
from t5x_sbs.trainer import configs, train_loop
from t5x_sbs.data import arith
from t5x_sbs.records import TeacherRecord

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY = "gin/models/t5_1_1/tiny.gin"
LENGTHS = "TASK_FEATURE_LENGTHS = {'inputs': 48, 'targets': 16}"  # one shape: compiled once (cache)
COMMON = ["T5Config.vocab_size = 384", "BATCH_SIZE = 8", "RunConfig.log_every = 1", "RunConfig.eval_batches = 1",
          "EVAL_EVERY = 2", "RunConfig.keep_checkpoints = None"]


def train(run_gin: str, model_dir, steps: int, *bindings: str) -> dict:
    gin.clear_config()
    try:
        run_configs = configs.configs_from_gin(
            [TINY, run_gin], [f"MODEL_DIR = {json.dumps(str(model_dir))}", f"TRAIN_STEPS = {steps}", *COMMON, *bindings],
            search_paths=[str(REPO)])
        return train_loop.train(run_configs)
    finally:
        gin.clear_config()


def pretrain(model_dir, steps: int, text_file, *bindings: str) -> dict:
    return train("gin/runs/pretrain.gin", model_dir, steps, "MIXTURE_OR_TASK_NAME = 'text_span_corruption'",
                 LENGTHS, "RunConfig.auto_vocab_size = 200",
                 f"tasks.pretrain.text_files.paths = [{json.dumps(str(text_file))}]",
                 "tasks.pretrain.options.validation_fraction = 0.05", *bindings)


def logged_steps(model_dir) -> list[int]:
    lines = (pathlib.Path(model_dir) / "metrics.jsonl").read_text().splitlines()
    return [r["step"] for r in map(json.loads, lines) if "loss" in r and "tokens_per_second" in r]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    import jax

    from t5x_sbs.experiments.runner import enable_compilation_cache

    root = tmp_path_factory.mktemp("pretrain_run")
    previous = jax.config.jax_compilation_cache_dir
    enable_compilation_cache(str(root / "jax_cache"))  # the pretraining runs share their steps
    paths = arith.write_splits(root / "arith", seed=5, sizes={"train": 200, "validation": 16, "test": 16})
    problems = arith.generate(seed=5, sizes={"train": 200, "validation": 16, "test": 16})
    (root / "text.txt").write_text("".join(f"{p.question} {p.rationale}\n" for p in problems["train"]))
    with open(root / "store.jsonl", "w") as f:  # the gold chains as the teacher's rationales
        for p in problems["train"]:
            f.write(TeacherRecord(id=p.id, dataset="arith", split="train", input={"question": p.question},
                                  gold=p.answer, rationale=p.rationale, label=p.answer, status="ok").to_json() + "\n")
    yield {"root": root, "paths": paths, "text": root / "text.txt", "store": root / "store.jsonl"}
    jax.config.update("jax_compilation_cache_dir", previous)


def test_pretrain_resume_finetune_export_and_continue_from_hf(data):
    from t5x_sbs.tasks.custom import register_jsonl_dataset

    pt = data["root"] / "pt"
    first = pretrain(pt, 2, data["text"])
    assert first["step"] == 2 and np.isfinite(first["loss"]) and first["label_tokens"] > 0
    assert (pt / model_files.VOCAB_FILE).is_file() and checkpoints.complete_steps(pt) == [2]
    assert pretrain(pt, 3, data["text"])["step"] == 3
    assert logged_steps(pt) == [1, 2, 3]  # resumed at step 2, not restarted
    assert checkpoints.complete_steps(pt)[-1] == 3 and (pt / checkpoints.BEST_DIR).is_dir()  # best by val loss

    register_jsonl_dataset("arith", train_path=data["paths"]["train"], validation_path=data["paths"]["validation"],
                           test_path=data["paths"]["test"], input_fields=("question",), label_field="answer",
                           id_field="id", teacher_file=str(data["store"]))
    sbs = data["root"] / "sbs"
    result = train("gin/runs/sbs.gin", sbs, 2, "MIXTURE_OR_TASK_NAME = 'arith_sbs_llm'",
                   LENGTHS, f"INITIAL_CHECKPOINT_PATH = {json.dumps(str(pt))}",
                   "OptimizerConfig.warmup_steps = 2")  # step 1: learning rate 0, the initial weights
    assert result["step"] == 2 and result["rationale_tokens"] > 0
    assert (sbs / model_files.VOCAB_FILE).read_bytes() == (pt / model_files.VOCAB_FILE).read_bytes()
    assert json.loads((sbs / train_loop.TEST_RESULTS_FILE).read_text())["test"]["accuracy"] >= 0
    pretrained = checkpoints.read_state_leaf(pt / "3", ("params", "encoder", "layers_0", "mlp", "wo", "kernel"))
    started = checkpoints.read_state_leaf(sbs / "2", ("params", "encoder", "layers_0", "mlp", "wo", "kernel"))
    np.testing.assert_allclose(started, pretrained, atol=0.05)  # near the pretrained weights, not random

    hf = data["root"] / "hf"
    assert cli.main(["convert", "--from", str(pt), "--to", "hf", "--out", str(hf)]) == 0
    assert (hf / "config.json").is_file() and (hf / model_files.VOCAB_FILE).is_file()
    cont = data["root"] / "continued"
    assert pretrain(cont, 1, data["text"], f"INITIAL_CHECKPOINT_PATH = {json.dumps(str(hf))}")["step"] == 1
    assert (cont / model_files.VOCAB_FILE).read_bytes() == (pt / model_files.VOCAB_FILE).read_bytes()

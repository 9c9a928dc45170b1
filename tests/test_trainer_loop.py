"""The train run mode end to end on real SVAMP data (tiny model): auto vocabulary, metrics.jsonl,
validation decode metrics, best/ by the validation metric, test results, resume, eval and infer
run modes; plus the optimisation options (accumulation, schedules, clipping, bf16)."""
from __future__ import annotations

import dataclasses
import functools
import glob
import json

import gin
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from t5x_sbs import checkpoints, main
from t5x_sbs.checkpoints import model_files
from t5x_sbs.trainer import builder, configs, optimizers, train_loop
from trainer_fixtures import batches as synthetic_batches, tiny_config

TINY_MODEL = ["T5Config.vocab_size = 256", "T5Config.d_model = 32", "T5Config.d_kv = 8", "T5Config.d_ff = 64",
              "T5Config.num_heads = 2", "T5Config.dropout_rate = 0.0"]


def svamp_bindings(model_dir, shared_data, steps: int, **extra) -> list[str]:
    out = TINY_MODEL + [
        f"MODEL_DIR = '{model_dir}'", "MIXTURE_OR_TASK_NAME = 'svamp_sbs_llm'", f"DATA_DIR = '{shared_data}'",
        f"TRAIN_STEPS = {steps}", "TASK_FEATURE_LENGTHS = {'inputs': 48, 'targets': 24}", "BATCH_SIZE = 8",
        "RunConfig.log_every = 1", "RunConfig.eval_batches = 1", "RunConfig.test_batches = 2",
        "RunConfig.auto_vocab_size = 256", "OptimizerConfig.learning_rate = 0.01"]
    return out + [f"{k} = {v}" for k, v in extra.items()]


def run_train(bindings) -> dict:
    return train_loop.train(configs.configs_from_gin(["gin/models/t5_1_1/tiny.gin", "gin/runs/sbs.gin"], bindings))


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_data):
    """8 steps, then resumed to 12 (EVAL_EVERY 4: validation at 4, 8, 12)."""
    model_dir = tmp_path_factory.mktemp("run")
    extra = {"EVAL_EVERY": 4, "PEAK_FLOPS_PER_DEVICE": 1e11}
    first = run_train(svamp_bindings(model_dir, shared_data, 8, **extra))
    first_lines = read_jsonl(model_dir / "metrics.jsonl")
    second = run_train(svamp_bindings(model_dir, shared_data, 12, **extra))
    return model_dir, first, second, first_lines


def _tensorboard_steps(model_dir, tag: str) -> list[int]:
    """Steps at which the TensorBoard event files hold scalar `tag` (read back with TensorBoard)."""
    from tensorboard.backend.event_processing import event_accumulator

    files = glob.glob(str(model_dir / "events.out.tfevents.*"))
    assert files, "no TensorBoard event file"
    steps = []
    for path in files:
        acc = event_accumulator.EventAccumulator(path, size_guidance={event_accumulator.TENSORS: 0})
        acc.Reload()
        if tag in acc.Tags()["tensors"]:
            steps += [event.step for event in acc.Tensors(tag)]
    return sorted(steps)


@pytest.mark.shared_data
def test_train_writes_vocab_config_metrics_and_tensorboard(trained):
    model_dir, first, second, _ = trained
    assert (model_dir / "spiece.model").is_file() and (model_dir / "config.json").is_file()
    assert model_files.load_model_config(model_dir).vocab_size == 256
    train_lines = [x for x in read_jsonl(model_dir / "metrics.jsonl") if "loss" in x]
    assert _tensorboard_steps(model_dir, "loss") == [x["step"] for x in train_lines]
    assert [x["step"] for x in train_lines] == list(range(1, 13))
    for line in train_lines:
        for key in ("loss", "label_loss", "rationale_loss", "tokens_per_second", "mfu", "learning_rate"):
            assert np.isfinite(line[key]), key
        # RATIONALE_WEIGHT = 1 in sbs.gin: the loss is the sum of the per-task means (+ z-loss).
        assert line["loss"] == pytest.approx(line["label_loss"] + line["rationale_loss"], rel=1e-2)
    losses = [x["loss"] for x in train_lines]
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.3, losses
    assert first["step"] == 8 and second["step"] == 12


@pytest.mark.shared_data
def test_validation_metric_keeps_best_and_test_uses_it(trained):
    model_dir = trained[0]
    lines = read_jsonl(model_dir / "metrics.jsonl")
    validation = {x["step"]: x for x in lines if "validation/accuracy" in x}
    assert sorted(validation) == [4, 8, 12]
    assert all("validation/label_loss" in x and "validation/rationale_loss" in x for x in validation.values())
    results = json.loads((model_dir / "test_results.json").read_text())
    best = max(validation.values(), key=lambda x: (x["validation/accuracy"], -x["step"]))
    # save_best keeps the first step reaching the best accuracy (ties do not replace it); the
    # first (8-step) run also evaluated its own best on test, the resumed one overwrote the file.
    assert results["selected_by"] == "validation/accuracy"
    assert results["best_step"] == best["step"]
    assert results["validation"]["value"] == pytest.approx(best["validation/accuracy"])
    assert set(results["test"]) >= {"accuracy", "label_loss", "rationale_loss", "loss"}


@pytest.mark.shared_data
def test_resume_continues_from_checkpoint_and_data_position(trained):
    model_dir, _, _, first_lines = trained
    assert max(x["step"] for x in first_lines) == 8
    manager = checkpoints.CheckpointManager(model_dir)
    assert manager.latest_step() == 12
    data_state = checkpoints.read_json_item(model_dir / "12", "data_state")
    assert data_state["batches_consumed"] == 12 and data_state["version"] == 1  # the stream's position
    assert sum(data_state["counts"]) == data_state["position"] > 12  # packed: several examples a batch
    steps = [x["step"] for x in read_jsonl(model_dir / "metrics.jsonl") if "loss" in x]
    assert steps == sorted(steps) and len(steps) == len(set(steps))  # resumed at 9, nothing repeated


@pytest.mark.shared_data
def test_eval_and_infer_run_modes(trained, shared_data, tmp_path):
    model_dir = trained[0]
    common = ["--gin_file=gin/models/t5_1_1/tiny.gin", "--gin_file=gin/runs/infer.gin"]
    flags = [f"--gin.{b.replace(' = ', '=', 1)}" for b in svamp_bindings(model_dir, shared_data, 12)]
    gin.clear_config()
    assert main.main(["--run_mode=eval", *common, *flags, "--gin.EvalConfig.max_batches=2"]) == 0
    results = json.loads((model_dir / "eval_test.json").read_text())
    assert results["split"] == "test" and "/best/" in results["checkpoint"]
    assert 0.0 <= results["accuracy"] <= 1.0 and np.isfinite(results["label_loss"])

    gin.clear_config()
    out = tmp_path / "preds.jsonl"
    assert main.main(["--run_mode=infer", *common, *flags, "--gin.EVAL_SPLIT='validation'",
                      f"--gin.INFER_OUTPUT='{out}'", "--gin.EvalConfig.max_batches=1"]) == 0
    rows = read_jsonl(out)
    assert len(rows) == 8 and all({"input", "prediction", "score", "target"} <= set(r) for r in rows)
    assert all(r["input"].startswith("predict:") and r["score"] <= 0 for r in rows)

    texts = tmp_path / "inputs.txt"
    texts.write_text("Dan has 5 apples and eats 2. How many are left?\nTom had 3 pens and got 4 more.\n")
    gin.clear_config()
    assert main.main(["--run_mode=infer", *common, *flags, f"--gin.EvalConfig.input_file='{texts}'",
                      f"--gin.INFER_OUTPUT='{out}'"]) == 0
    rows = read_jsonl(out)
    assert [r["input"].split("apples")[0] for r in rows][:1] == ["predict: Dan has 5 "]
    assert len(rows) == 2 and all(np.isfinite(r["score"]) and "target" not in r for r in rows)


def test_vocabulary_larger_than_embedding_is_an_error(tmp_path):
    from t5x_sbs.data import vocab

    spm = vocab.train_sentencepiece([f"word{i} thing{i * 7} other{i * 13}" for i in range(300)],
                                    str(tmp_path / "v.model"), vocab_size=200)
    gin.clear_config()
    configs.parse_gin([], [f"SPM_PATH = '{spm}'", "tasks.config.vocabulary_path.path = %SPM_PATH"])
    run = train_loop.RunConfig(model_dir=str(tmp_path), mixture_or_task_name="svamp_sbs_llm")
    with pytest.raises(ValueError, match=r"v\.model has \d+ pieces, more than T5Config.vocab_size=64"):
        train_loop.resolve_vocabulary(run, tiny_config(vocab_size=64))
    assert train_loop.resolve_vocabulary(run, tiny_config(vocab_size=256)) == spm


def test_default_intervals_fit_short_runs():
    run = train_loop.RunConfig(model_dir="", mixture_or_task_name="", train_steps=30)
    assert (run.interval("eval"), run.interval("infer"), run.interval("checkpoint")) == (8, 8, 8)
    run = dataclasses.replace(run, train_steps=100_000, eval_every=500, checkpoint_every=2000)
    assert (run.interval("eval"), run.interval("infer"), run.interval("checkpoint")) == (500, 500, 2000)


# ----------------------------------------------------------------------------- optimisation
def _trainer(run_kw=None, model_kw=None, **opt_kw):
    """A one-device Trainer (compiles fast); multi-device equality is the partitioning tests' job."""
    from t5x_sbs.trainer import partitioning
    from t5x_sbs.trainer import train_step as trainer_lib
    from t5x_sbs.models.t5 import Transformer

    config = optimizers.OptimizerConfig(**opt_kw)
    part = partitioning.Partitioner(partitioning.make_mesh(devices=jax.devices()[:1]))
    shapes = {k: (8, 16 if k.startswith("encoder") else 12) for k in builder.batch_keys(
        train_loop.RunConfig(model_dir="", mixture_or_task_name=""))}
    make_tx = functools.partial(optimizers.make_optimizer, config, 10)  # the Trainer adds the logical axes
    trainer = trainer_lib.Trainer(Transformer(tiny_config(**(model_kw or {}))), make_tx, part, shapes,
                                  loss_config=trainer_lib.LossConfig(),
                                  schedule=optimizers.make_schedule(config, 10), **(run_kw or {}))
    return part, trainer


def _steps(part, trainer, n=2):
    state, out = trainer.init_state(), []
    with part.activation_context():
        for batch in synthetic_batches(3, count=n):
            state, metrics = trainer.train_step(state, part.global_batch(batch), trainer.base_rng)
            out.append(metrics)
    return state, out


def test_gradient_accumulation_equals_full_batch():
    # eps = 1 keeps Adam's update ~linear in the gradient, so parameter equality means gradient equality.
    full, full_metrics = _steps(*_trainer(name="adamw", learning_rate=1e-2, eps=1.0))
    accum, accum_metrics = _steps(*_trainer({"num_microbatches": 4}, name="adamw", learning_rate=1e-2, eps=1.0))
    for a, b in zip(full_metrics, accum_metrics):
        np.testing.assert_allclose(float(a["loss"]), float(b["loss"]), rtol=1e-5)
        np.testing.assert_allclose(float(a["grad_norm"]), float(b["grad_norm"]), rtol=1e-4)
    for a, b in zip(jax.tree.leaves(full.params), jax.tree.leaves(accum.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


@pytest.mark.parametrize("schedule, expected", [
    ("constant", {0: 0.0, 5: 0.5, 10: 1.0, 50: 1.0}),
    ("rsqrt", {0: 1.0, 10: 1.0, 40: 0.5, 90: 1 / 3}),
    ("linear", {0: 0.0, 10: 1.0, 55: 0.5, 100: 0.0}),
])
def test_schedules(schedule, expected):
    fn = optimizers.make_schedule(optimizers.OptimizerConfig(learning_rate=1.0, schedule=schedule, warmup_steps=10), 100)
    for step, value in expected.items():
        assert float(fn(step)) == pytest.approx(value, abs=1e-6), (schedule, step)


def test_gradient_clipping_clips_the_global_norm_before_the_optimizer():
    # Adam with b1 = b2 = 0 and eps = 1 updates by -lr * g / (|g| + 1): the update shows which g it saw.
    def first_update(clip):
        config = optimizers.OptimizerConfig(name="adamw", learning_rate=1.0, b1=0.0, b2=0.0, eps=1.0,
                                            grad_clip_norm=clip)
        tx = optimizers.make_optimizer(config, 10)
        params = {"w": jnp.zeros(4)}
        updates, _ = tx.update({"w": jnp.array([3.0, 4.0, 0.0, 0.0])}, tx.init(params), params)  # norm 5
        return np.asarray(updates["w"])

    np.testing.assert_allclose(first_update(None), [-3 / 4, -4 / 5, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(first_update(0.5), [-0.3 / 1.3, -0.4 / 1.4, 0, 0], rtol=1e-6)


def test_bf16_compute_keeps_f32_params():
    part, trainer = _trainer(model_kw={"dtype": "bfloat16", "param_dtype": "float32"})
    state, metrics = _steps(part, trainer, n=2)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.params))
    assert all(np.isfinite(float(m["loss"])) for m in metrics)
    _, f32 = _steps(*_trainer())
    # same data, bf16 activations: close to the f32 loss, but not the identical computation
    assert float(metrics[0]["loss"]) == pytest.approx(float(f32[0]["loss"]), rel=2e-2)
    assert float(metrics[0]["loss"]) != float(f32[0]["loss"])


@pytest.mark.shared_data
def test_early_stopping_stops_after_patience_and_tests_the_best_step(tmp_path, shared_data):
    # A learning rate of 0 keeps the validation metric flat: no evaluation after the first improves.
    bindings = svamp_bindings(tmp_path, shared_data, 40, INFER_EVAL_EVERY=2, EVAL_EVERY=2, EARLY_STOPPING_PATIENCE=2)
    result = run_train(bindings + ["OptimizerConfig.learning_rate = 0.0"])
    assert result["step"] == 6  # evaluations at 2 (best), 4 and 6 (no better): patience 2 reached
    assert checkpoints.CheckpointManager(tmp_path).latest_step() == 6
    results = json.loads((tmp_path / train_loop.TEST_RESULTS_FILE).read_text())
    assert results["best_step"] == 2 and "accuracy" in results["test"]

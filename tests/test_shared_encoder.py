"""Shared-encoder step-by-step (t5x_sbs.trainer.shared_encoder): one encoder pass per example, label and
rationale decoded from it. Loss equal to the two-row layout's when the encoder sees the same
input, the label path equal to the test-time (label-prefix-only) path, gradients from both terms,
the index-based stream (layout, resume), and a gin run whose checkpoint evaluates."""
from __future__ import annotations

import json

import gin
import jax
import numpy as np
import optax
import pytest

from t5x_sbs import main
from t5x_sbs.trainer import input_pipeline, losses, shared_encoder
from t5x_sbs.trainer import train_step as trainer_lib
from t5x_sbs.models.t5 import Transformer, init_params
from t5x_sbs.names import LABEL_TASK_ID, RATIONALE_TASK_ID
from trainer_fixtures import examples, tiny_config

PREFIX = [5, 7]  # the rationale prefix's tokens (any ids the vocabulary has)
LENGTHS = (48, 40)


def _two_row_batch(exs) -> dict[str, np.ndarray]:
    """The standard paired layout: label row and rationale row, each with the (same) input, packed;
    the rationale row's decoder starts with the prefix, which carries no loss (as shared)."""
    rows = [[(np.int32(inp), np.int32(label), LABEL_TASK_ID),
             (np.int32(inp), np.int32(PREFIX + rat), RATIONALE_TASK_ID)] for inp, label, rat in exs]
    batch = input_pipeline.pack_rows([[x for row in rows for x in row]], LENGTHS, pack=True)
    seg = batch["decoder_segment_ids"]
    prefix = (seg > 0) & (seg % 2 == 0) & (batch["decoder_positions"] < len(PREFIX))
    batch["decoder_loss_weights"][prefix] = 0
    batch["decoder_task_ids"][prefix] = 0
    return batch


def _shared_batch(exs) -> dict[str, np.ndarray]:
    row = [shared_encoder.shared_example(inp, label, rat, PREFIX) for inp, label, rat in exs]
    return shared_encoder.pack_shared_rows([row], LENGTHS, len(PREFIX))


@pytest.fixture(scope="module")
def model_and_params():
    config = tiny_config()
    return Transformer(config), init_params(config, jax.random.key(0))


def test_shared_encoder_loss_equals_the_two_row_loss(model_and_params):
    model, params = model_and_params
    exs = examples(seed=4, n=3)
    loss_config = trainer_lib.LossConfig(rationale_weight=0.5)
    shared, shared_aux = trainer_lib.batch_loss(model, params, _shared_batch(exs), loss_config)
    two_row, two_row_aux = trainer_lib.batch_loss(model, params, _two_row_batch(exs), loss_config)
    np.testing.assert_allclose(float(shared), float(two_row), rtol=1e-5)
    for key in ("label_loss_sum", "rationale_loss_sum", "label_tokens", "rationale_tokens"):
        np.testing.assert_allclose(float(shared_aux[key]), float(two_row_aux[key]), rtol=1e-5, err_msg=key)
    # L = L_label + λ·L_rationale, each a mean over its own target tokens (the prefix is not one).
    assert float(shared_aux["label_tokens"]) == sum(len(label) for _, label, _ in exs)
    assert float(shared_aux["rationale_tokens"]) == sum(len(rat) for _, _, rat in exs)
    label_mean = shared_aux["label_loss_sum"] / shared_aux["label_tokens"]
    rationale_mean = shared_aux["rationale_loss_sum"] / shared_aux["rationale_tokens"]
    np.testing.assert_allclose(float(shared), float(label_mean + 0.5 * rationale_mean), rtol=1e-6)


def test_label_segment_is_the_test_time_label_row(model_and_params):
    """The label logits equal those of the label prefix alone (one unpacked row, as eval/infer feed)."""
    model, params = model_and_params
    exs = examples(seed=5, n=2)
    batch = _shared_batch(exs)
    logits = model.apply({"params": params}, **trainer_lib.model_inputs(batch), enable_dropout=False)
    label_positions = batch["decoder_task_ids"][0] == LABEL_TASK_ID
    starts = np.flatnonzero(label_positions & (batch["decoder_positions"][0] == 0))
    for (inp, label, _), start in zip(exs, starts):
        row = {"encoder_input_tokens": np.zeros((1, LENGTHS[0]), np.int32),
               "decoder_target_tokens": np.zeros((1, LENGTHS[1]), np.int32),
               "decoder_input_tokens": np.zeros((1, LENGTHS[1]), np.int32)}
        row["encoder_input_tokens"][0, :len(inp)] = inp
        row["decoder_target_tokens"][0, :len(label)] = label
        row["decoder_input_tokens"][0, 1:len(label)] = label[:-1]
        alone = model.apply({"params": params}, **row, enable_dropout=False)
        np.testing.assert_allclose(np.asarray(logits[0, start:start + len(label)]),
                                   np.asarray(alone[0, :len(label)]), rtol=1e-5, atol=1e-5)


def test_gradients_reach_the_shared_encoder_from_both_terms(model_and_params):
    model, params = model_and_params
    batch = _shared_batch(examples(seed=6, n=3))

    def loss(p, label_weight, rationale_weight):
        logits = model.apply({"params": p}, **trainer_lib.model_inputs(batch), enable_dropout=False)
        weights = {LABEL_TASK_ID: label_weight, RATIONALE_TASK_ID: rationale_weight}
        return losses.weighted_task_loss(logits, batch["decoder_target_tokens"], batch["decoder_task_ids"], weights,
                                         loss_weights=batch["decoder_loss_weights"])[0]

    grad = jax.jit(jax.grad(loss))
    for name, weights in (("label", (1.0, 0.0)), ("rationale", (0.0, 1.0))):
        grads = grad(params, *weights)
        by_part = {part: float(optax.global_norm(grads[part])) for part in ("encoder", "decoder")}
        assert by_part["encoder"] > 1e-6 and by_part["decoder"] > 1e-6, (name, by_part)


def _task_rows(exs, name="toy_sbs_llm_paired") -> input_pipeline.TaskRows:
    inputs, targets, ids = [], [], []
    for inp, label, rat in exs:
        inputs += [np.int32(inp), np.int32(inp)]
        targets += [np.int32(label), np.int32(rat)]
        ids += [LABEL_TASK_ID, RATIONALE_TASK_ID]
    return input_pipeline.TaskRows(name, inputs, targets, np.int32(ids), np.arange(0, len(ids) + 1, 2))


def _batches(rows, state=None, lengths=None):
    return shared_encoder.SharedEncoderBatches(
        [rows], np.ones(1), lengths or {"inputs": 16, "targets": 24}, 4, rationale_prefix=PREFIX, pack=True,
        seed=3, state=state)


def test_stream_layout_and_resume():
    rows = _task_rows(examples(seed=7, n=40))
    stream = _batches(rows)
    first = [next(stream) for _ in range(3)]
    batch, drawn = first[0], json.dumps(stream.state())
    # One encoder segment per example; two decoder segments read it (label odd id, rationale even).
    for enc_seg, dec_seg, reads in zip(batch["encoder_segment_ids"], batch["decoder_segment_ids"],
                                       batch["decoder_encoder_segment_ids"]):
        used = dec_seg > 0
        assert set(np.unique(reads[used])) == set(np.unique(enc_seg[enc_seg > 0]))
        np.testing.assert_array_equal((dec_seg[used] + 1) // 2, reads[used])
    examples_in_first = int(batch["encoder_segment_ids"].max(axis=1).sum())
    assert stream.state()["position"] == sum(int(b["encoder_segment_ids"].max(axis=1).sum()) for b in first)
    label = batch["decoder_task_ids"] == LABEL_TASK_ID
    assert examples_in_first == int(((batch["decoder_positions"] == 0) & label).sum())
    prefix = (batch["decoder_segment_ids"] % 2 == 0) & (batch["decoder_positions"] < len(PREFIX)) & \
        (batch["decoder_segment_ids"] > 0)
    assert (batch["decoder_target_tokens"][prefix].reshape(-1, 2) == PREFIX).all()
    assert (batch["decoder_loss_weights"][prefix] == 0).all()
    resumed = _batches(rows, state=json.loads(drawn))
    after = next(stream)
    for key, value in next(resumed).items():
        np.testing.assert_array_equal(value, after[key], err_msg=key)


def test_long_rationale_is_trimmed_with_its_eos():
    rows = _task_rows([([3, 4, 1], [9, 1], list(range(10, 40)) + [1])])
    batch = next(_batches(rows, lengths={"inputs": 8, "targets": 12}))
    targets = batch["decoder_target_tokens"][0]
    assert list(targets) == [9, 1] + PREFIX + list(range(10, 17)) + [1]


def test_unpaired_task_is_a_clear_error():
    rows = _task_rows(examples(seed=8, n=3))
    rows = input_pipeline.TaskRows(rows.name, rows.inputs, rows.targets, np.int32([1, 2, 1, 1, 1, 2]),
                                   rows.unit_starts)
    with pytest.raises(ValueError, match=r"needs a paired task .* toy_sbs_llm_paired: row 3 has task id 1"):
        _batches(rows)


@pytest.mark.shared_data
def test_gin_run_trains_and_its_checkpoint_evaluates_from_the_label_prefix(tmp_path, shared_data):
    from test_trainer_loop import read_jsonl, run_train, svamp_bindings

    bindings = svamp_bindings(tmp_path, shared_data, 8, LOSS_MODE="'shared_encoder'", EVAL_EVERY=8)
    out = run_train(bindings)
    assert out["step"] == 8
    lines = [x for x in read_jsonl(tmp_path / "metrics.jsonl") if "loss" in x]
    assert all(x["label_tokens"] > 0 and x["rationale_tokens"] > 0 for x in lines)
    assert lines[-1]["loss"] < lines[0]["loss"], [x["loss"] for x in lines]
    flags = [f"--gin.{b.replace(' = ', '=', 1)}" for b in bindings]
    common = ["--gin_file=gin/models/t5_1_1/tiny.gin", "--gin_file=gin/runs/infer.gin"]
    gin.clear_config()
    assert main.main(["--run_mode=eval", *common, *flags, "--gin.EvalConfig.max_batches=1"]) == 0
    results = json.loads((tmp_path / "eval_test.json").read_text())
    assert 0.0 <= results["accuracy"] <= 1.0 and np.isfinite(results["label_loss"])
    out_file = tmp_path / "preds.jsonl"
    gin.clear_config()
    assert main.main(["--run_mode=infer", *common, *flags, "--gin.EVAL_SPLIT='validation'",
                      f"--gin.INFER_OUTPUT='{out_file}'", "--gin.EvalConfig.max_batches=1"]) == 0
    assert all(r["input"].startswith("predict:") for r in read_jsonl(out_file))

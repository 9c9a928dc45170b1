"""precompile: the real train step compiled from shapes; its numbers checked against reality.

One tiny compile (through gin, as `main --run_mode=precompile` does) is checked byte for byte
against a state actually built on the same 8-device mesh; FLOPs are checked against a matmul
count. The mid-size CLI run (small, FSDP+TP on 8 devices) is in test_precompile_cli.py.
"""
import contextlib
import io
import json
import math

import gin
import jax
import pytest

from t5x_sbs.trainer import configs, precompile

BATCH, INPUTS, TARGETS = 16, 32, 16
GIN = ["gin/runs/sbs.gin", "gin/models/t5_1_1/tiny.gin", "gin/partitioning/fsdp_tp.gin"]
BINDINGS = [
    "T5Config.vocab_size = 512",
    "T5Config.num_encoder_layers = 1",
    "T5Config.num_decoder_layers = 1",
    "T5Config.dropout_rate = 0.0",
    f"BATCH_SIZE = {BATCH}",
    f"TASK_FEATURE_LENGTHS = {{'inputs': {INPUTS}, 'targets': {TARGETS}}}",
    "PEAK_FLOPS_PER_DEVICE = 1e11",
    "DEVICE_MEMORY_GB = 1.0",
]


@pytest.fixture(scope="module")
def compiled():
    """precompile.run() after main's gin parsing -> (its JSON, the run's partitioner and Trainer)."""
    gin.clear_config()
    configs.parse_gin(GIN, BINDINGS, defaults=precompile.UNSET_RUN_MACRO_DEFAULTS)
    try:
        run_configs, precompile_config = configs.from_gin(), precompile.PrecompileConfig.from_gin()
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert precompile.run(run_configs, precompile_config) == 0
        run_configs = precompile.compile_configs(run_configs)
        run_config = run_configs.run
        _, step_trainer = precompile.build_trainer(run_configs, precompile_config)
    finally:
        gin.clear_config()
    lines = out.getvalue().strip().splitlines()
    assert len(lines) == 1  # exactly one JSON object
    return json.loads(lines[0]), run_config, step_trainer


def per_device_bytes(tree, device) -> int:
    return sum(shard.data.nbytes for leaf in jax.tree.leaves(tree)
               for shard in leaf.addressable_shards if shard.device == device)


def test_report_reads_gin_and_has_every_field(compiled):
    result, _, _ = compiled
    assert result["mesh"] == {"data": 1, "fsdp": 4, "model": 2} and result["num_devices"] == 8
    assert (result["batch_size"], result["inputs_length"], result["targets_length"]) == (BATCH, INPUTS, TARGETS)
    assert result["optimizer"] == "adafactor" and result["platform"] == "cpu"
    total = (result["argument_bytes"] + result["output_bytes"] - result["alias_bytes"]
             + result["temp_bytes"] + result["generated_code_bytes"])
    assert result["per_device_memory_bytes"] == total > 0
    assert result["fits"] is True and result["device_memory_gb"] == 1.0
    assert result["step_time_at_peak_s"] == pytest.approx(result["model_flops_per_step"] / (8 * 1e11))
    assert result["compile_time_s"] > 0


def test_argument_bytes_equal_a_real_sharded_state(compiled):
    """XLA's per-device argument size == this device's shards of a real state + batch + rng key,
    less the inputs jit prunes because the step never reads them (position features, the dropout
    key at rate 0, Adafactor's 1-element placeholders for unfactored slots)."""
    result, run_config, step_trainer = compiled
    state = step_trainer.init_state()
    device = step_trainer.partitioner.mesh.devices.flat[0]
    state_bytes = per_device_bytes(state, device)
    assert result["state_bytes"] == state_bytes
    replicated = sum(x.nbytes for x in jax.tree.leaves(state))
    assert state_bytes < replicated / 2  # really sharded (FSDP x TP), not replicated

    rows = BATCH // 4  # batch sharded over data x fsdp = 4, replicated over model
    batch_bytes = {k: rows * shape[1] * 4 for k, shape in step_trainer.batch_shapes.items()}
    key_bytes = jax.random.key_data(step_trainer.base_rng).nbytes
    placeholders = sum(x.nbytes for x in jax.tree.leaves(state.opt_state) if x.shape == (1,))
    prunable = batch_bytes["encoder_positions"] + batch_bytes["decoder_positions"] + key_bytes + placeholders
    full = state_bytes + sum(batch_bytes.values()) + key_bytes
    assert full - prunable <= result["argument_bytes"] <= full
    assert state_bytes - placeholders <= result["alias_bytes"] <= state_bytes  # donated state
    assert result["params"] == step_trainer.num_params()


def test_flops_cover_the_matmuls_of_a_training_step(compiled):
    """Forward matmuls per token = 2 x weights used; training = 3x forward (no remat here)."""
    result, _, step_trainer = compiled
    cfg = step_trainer.model.config
    shapes = jax.tree.map(lambda x: x.shape, step_trainer.abstract_state().params)

    def matmul_weights(tree):
        return sum(math.prod(s) for path, s in jax.tree_util.tree_leaves_with_path(
            tree, is_leaf=lambda x: isinstance(x, tuple)) if len(s) >= 2 and "relpos" not in str(path))

    enc, dec = matmul_weights(shapes["encoder"]), matmul_weights(shapes["decoder"])
    if "logits_dense" not in shapes["decoder"]:
        dec += math.prod(shapes["token_embedder"]["embedding"])
    heads_dim = cfg.num_heads * cfg.d_kv
    attention = 4 * heads_dim * (INPUTS * INPUTS + TARGETS * TARGETS + TARGETS * INPUTS)  # QK^T and AV
    estimate = 3 * BATCH * (2 * enc * INPUTS + 2 * dec * TARGETS + attention)
    ratio = result["flops_per_step"] / estimate
    assert 0.9 < ratio < 2.5, (result["flops_per_step"], estimate)
    assert result["flops_per_step"] == result["flops_per_step_per_device"] * 8
    # The 6·N·tokens figure (MFU numerator) leaves out attention scores and the remat-free
    # backward's extras, so it sits a little under XLA's count of the unscanned step.
    assert 0.5 < result["flops_per_step"] / result["model_flops_per_step"] < 2.5


def test_a_device_count_jax_cannot_give_is_a_clear_error():
    assert len(precompile.ensure_devices(8)) == 8  # conftest's 8 fake devices
    with pytest.raises(ValueError, match=r"NUM_DEVICES=4 but JAX has 8 cpu devices.*--devices=4"):
        precompile.ensure_devices(4)

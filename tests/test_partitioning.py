"""Mesh shapes, logical rules, and the 8-fake-device presets against one device."""
import dataclasses

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from t5x_sbs.trainer import partitioning as pt
from trainer_fixtures import LOSS_RTOL, PARAM_ATOL, PARAM_RTOL, mesh_run, mesh_trainer, reference_run

PRESETS = {"dp": pt.MeshConfig(-1, 1, 1), "fsdp": pt.MeshConfig(1, -1, 1), "fsdp_tp": pt.MeshConfig(1, -1, 2)}


def test_mesh_shapes_and_errors():
    assert pt.MeshConfig(1, -1, 2).shape(8) == (1, 4, 2)
    assert pt.MeshConfig(-1, 1, 1).shape(8) == (8, 1, 1)
    with pytest.raises(ValueError, match="at most one"):
        pt.MeshConfig(-1, -1, 1).shape(8)
    with pytest.raises(ValueError, match="not divisible"):
        pt.MeshConfig(-1, 1, 3).shape(8)
    with pytest.raises(ValueError, match="needs 4 devices"):
        pt.MeshConfig(2, 2, 1).shape(8)


def test_rules_shard_params_and_keep_activation_embed_unsharded():
    mesh = pt.make_mesh(PRESETS["fsdp_tp"])
    assert mesh.axis_types == (jax.sharding.AxisType.Auto,) * 3
    shard = pt.Partitioner(mesh).logical_to_sharding(
        {"wi": P("embed", "mlp"), "emb": P("vocab", "embed"), "act": P("batch", "length", "embed")})
    assert shard["wi"].spec == P("fsdp", "model")
    assert shard["emb"].spec == P("model", "fsdp")
    assert shard["act"].spec == P(("data", "fsdp"), None, None)  # fsdp already taken by batch


def test_global_batch_is_sharded_over_batch_axes():
    part = pt.Partitioner(pt.make_mesh(PRESETS["fsdp"]))
    local = np.arange(32, dtype=np.int32).reshape(8, 4)
    out = part.global_batch({"x": local})["x"]
    assert out.shape == (8, 4) and out.sharding.spec == P(("data", "fsdp"), None)
    np.testing.assert_array_equal(np.asarray(out), local)
    with pytest.raises(ValueError, match="BATCH_SIZE=6"):
        part.check_batch_size(6)


def test_process_rows_single_process_holds_the_whole_batch():
    part = pt.Partitioner(pt.make_mesh(PRESETS["fsdp_tp"]))
    assert part.process_rows(8) == slice(0, 8)


def test_activation_constraints_are_in_the_compiled_step():
    """On by default: q/k/v, MLP hidden, residual and logits carry mesh constraints ('model' on heads)."""
    part, trainer = mesh_trainer(PRESETS["fsdp_tp"])
    assert part.constrain_activations

    def lowered_text(partitioner):
        with partitioner.activation_context():
            return trainer.train_step.lower(trainer.abstract_state(), trainer.abstract_batch(),
                                            trainer.base_rng).as_text()

    on = lowered_text(part)
    heads = [line for line in on.splitlines() if "sharding_constraint" in line and "x4x8xf32" in line]
    assert heads and all('[{"data", "fsdp"}, {}, {"model"}, {}]' in line for line in heads)
    assert "sharding_constraint" not in lowered_text(dataclasses.replace(part, constrain_activations=False))


@pytest.mark.distributed
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_on_8_devices_match_one_device(preset):
    """A few steps with dropout on and the default Adafactor: same losses and params as 1 device."""
    assert len(jax.devices()) == 8
    ref = reference_run()
    losses, params, _, state = mesh_run(PRESETS[preset], initial=ref["initial"])
    np.testing.assert_allclose(losses, ref["losses"], rtol=LOSS_RTOL)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=PARAM_RTOL, atol=PARAM_ATOL),
                 params, ref["params"])
    moved = max(jax.tree.leaves(jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))),
                                             ref["params"], ref["initial"].params)))
    assert moved > 100 * PARAM_ATOL  # training moved the params far beyond the tolerance
    kernel = state.params["encoder"]["layers_0"]["mlp"]["wi_0"]["kernel"]
    assert kernel.sharding.shard_shape(kernel.shape) == WI_SHARD_SHAPE[preset]
    assert len(kernel.sharding.device_set) == 8


WI_SHARD_SHAPE = {"dp": (32, 64), "fsdp": (32 // 8, 64), "fsdp_tp": (32 // 4, 64 // 2)}  # (embed, mlp)

"""Tiny model and synthetic batches shared by the trainer and partitioning tests."""
from __future__ import annotations

import functools
import os
import signal

import numpy as np

from t5x_sbs import names
from t5x_sbs.models.config import T5Config
from t5x_sbs.trainer import train_loop

TINY = dict(vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_heads=4, num_encoder_layers=2,
            num_decoder_layers=2, relative_attention_num_buckets=8, relative_attention_max_distance=16)
INPUT_LEN, TARGET_LEN = 16, 12


def tiny_config(**overrides) -> T5Config:
    return T5Config(**{**TINY, "dropout_rate": 0.0, **overrides})


def examples(seed: int, n: int):
    """n (inputs, label targets, rationale targets) with EOS=1 and no zeros inside."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        inp = list(rng.integers(2, 64, size=int(rng.integers(3, 7)))) + [1]
        label = list(rng.integers(2, 64, size=int(rng.integers(1, 3)))) + [1]
        rationale = list(rng.integers(2, 64, size=int(rng.integers(2, 6)))) + [1]
        out.append((inp, label, rationale))
    return out


def rows_of(exs):
    """Paired rows: each example's label row then its rationale row (same inputs)."""
    rows = []
    for inp, label, rationale in exs:
        rows.append((inp, label, names.LABEL_TASK_ID))
        rows.append((inp, rationale, names.RATIONALE_TASK_ID))
    return rows


def make_batch(rows, num_rows: int, packed: bool) -> dict[str, np.ndarray]:
    """Rows -> a T5X-style batch (packed: greedy, with segment ids and positions)."""
    keys = ("encoder_input_tokens", "encoder_segment_ids", "encoder_positions", "decoder_target_tokens",
            "decoder_input_tokens", "decoder_segment_ids", "decoder_positions", "decoder_loss_weights",
            "decoder_task_ids")
    lens = {k: INPUT_LEN if k.startswith("encoder") else TARGET_LEN for k in keys}
    batch = {k: np.zeros((num_rows, lens[k]), np.int32) for k in keys}
    r, enc_pos, dec_pos, seg = -1, INPUT_LEN, TARGET_LEN, 0
    for inp, tgt, task in rows:
        if not packed or enc_pos + len(inp) > INPUT_LEN or dec_pos + len(tgt) > TARGET_LEN:
            r, enc_pos, dec_pos, seg = r + 1, 0, 0, 0
        seg += 1
        e, d = slice(enc_pos, enc_pos + len(inp)), slice(dec_pos, dec_pos + len(tgt))
        batch["encoder_input_tokens"][r, e] = inp
        batch["encoder_segment_ids"][r, e] = seg
        batch["encoder_positions"][r, e] = np.arange(len(inp))
        batch["decoder_target_tokens"][r, d] = tgt
        batch["decoder_input_tokens"][r, d] = [0] + list(tgt[:-1])
        batch["decoder_segment_ids"][r, d] = seg
        batch["decoder_positions"][r, d] = np.arange(len(tgt))
        batch["decoder_loss_weights"][r, d] = 1
        batch["decoder_task_ids"][r, d] = task
        enc_pos, dec_pos = enc_pos + len(inp), dec_pos + len(tgt)
    assert r < num_rows, f"{len(rows)} rows need more than {num_rows} batch rows"
    if not packed:
        for k in keys:
            if "segment" in k or "positions" in k:
                del batch[k]
    return batch


def batches(seed: int, num_rows: int = 8, packed: bool = True, count: int = 4):
    """Deterministic packed paired batches."""
    out = []
    for i in range(count):
        exs = examples(seed * 1000 + i, num_rows // 2)
        out.append(make_batch(rows_of(exs), num_rows, packed))
    return out


# --- sharded-training runs (8 fake devices, 2 processes) against one device ------------------
MESH_STEPS = 3
MESH_ROWS = 8  # global batch rows
# Float32 reduction order is the only difference between layouts (XLA splits sums over shards;
# dropout masks are the same because threefry is partitionable). Measured: losses agree to
# ~1e-7 relative, params to ~1.2e-7 absolute (1 ulp at |w|~1) after 3 Adafactor steps. The
# tolerances leave ~10x headroom and stay ~100x below one run's update (the tests check that).
LOSS_RTOL, PARAM_RTOL, PARAM_ATOL = 1e-5, 1e-5, 1e-6


def mesh_trainer(mesh_config, devices=None):
    """The tiny model with dropout 0.1, the default optimizer (Adafactor, T5X defaults), λ=0.5."""
    from t5x_sbs.trainer import optimizers
    from t5x_sbs.trainer import partitioning as pt
    from t5x_sbs.trainer import train_step as tr
    from t5x_sbs.models.t5 import Transformer

    opt = optimizers.OptimizerConfig()
    part = pt.Partitioner(pt.make_mesh(mesh_config, devices))
    shapes = {k: (MESH_ROWS,) + v.shape[1:] for k, v in mesh_batches()[0].items()}
    make_tx = functools.partial(optimizers.make_optimizer, opt, MESH_STEPS)  # the Trainer adds the logical axes
    trainer = tr.Trainer(Transformer(tiny_config(dropout_rate=0.1)), make_tx, part, shapes,
                         loss_config=tr.LossConfig(rationale_weight=0.5),
                         schedule=optimizers.make_schedule(opt, MESH_STEPS))
    return part, trainer


def mesh_batches():
    return batches(seed=1, num_rows=MESH_ROWS, packed=True, count=MESH_STEPS)


def mesh_run(mesh_config, devices=None, *, initial=None):
    """Trains MESH_STEPS steps; this process feeds its own block of each global batch's rows.

    `initial` (a host TrainState) is placed on the mesh instead of initialising there.
    Returns (losses, host params, host initial state, device state)."""
    import jax
    from jax.experimental import multihost_utils

    part, trainer = mesh_trainer(mesh_config, devices)
    state = trainer.init_state() if initial is None else jax.device_put(initial, trainer.state_shardings)
    first = multihost_utils.process_allgather(state, tiled=True)
    local = MESH_ROWS // jax.process_count()
    rows = slice(jax.process_index() * local, (jax.process_index() + 1) * local)
    losses = []
    with part.activation_context():
        for batch in mesh_batches():
            batch = part.global_batch({k: v[rows] for k, v in batch.items()})
            state, metrics = trainer.train_step(state, batch, trainer.base_rng)
            losses.append(float(metrics["loss"]))
    return losses, multihost_utils.process_allgather(state.params, tiled=True), first, state


_REFERENCE = {}


def reference_run():
    """The one-device run every sharded run is compared with (computed once per process)."""
    import jax
    from t5x_sbs.trainer import partitioning as pt

    if not _REFERENCE:
        losses, params, first, _ = mesh_run(pt.MeshConfig(1, 1, 1), jax.devices()[:1])
        _REFERENCE.update(losses=losses, params=params, initial=first)
    return _REFERENCE


def preempt_after(steps: int, monkeypatch) -> None:
    """The loop's Trainer sends SIGTERM after `steps` steps: the loop saves and exits (no evaluation)."""
    build = train_loop.build

    def build_with_stop(*args, **kwargs):
        model_config, part, trainer = build(*args, **kwargs)
        step_fn, done = trainer.train_step, []

        def train_step(*step_args):
            out = step_fn(*step_args)
            done.append(1)
            if len(done) == steps:
                os.kill(os.getpid(), signal.SIGTERM)
            return out

        trainer.train_step = train_step
        return model_config, part, trainer

    monkeypatch.setattr(train_loop, "build", build_with_stop)

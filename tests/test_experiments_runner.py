"""The experiments runner builds each cell's typed configs in Python (#13): the same recipe as
gin/runs/demo.gin, a sweep's gin_bindings on top, and only the data edge left in gin."""
from __future__ import annotations

import dataclasses
import json

import pytest

from t5x_sbs.experiments import runner
from t5x_sbs.records import InputError
from t5x_sbs.tasks import config as task_config
from t5x_sbs.trainer import configs

MODEL = "gin/models/t5_1_1/tiny.gin"
SPEC = runner.TrainSpec(
    model_dir="/tmp/runner_cell", mixture="arith_sbs_llm", model_gin=MODEL, spm_path="/tmp/spm.model",
    data_dir="/tmp/data", train_steps=40, batch_size=4, feature_lengths=(("inputs", 64), ("targets", 16)),
    rationale_weight=0.5, fraction=0.25, seed=3, eval_every=10, learning_rate=2e-3, loss_mode="paired",
    initial_checkpoint="/tmp/pretrained", vocab_size=256, early_stopping_patience=2)


def demo_gin_macros(spec: runner.TrainSpec) -> list[str]:
    """The spec as gin/runs/demo.gin's macros (how a command-line user spells the same cell)."""
    return [f"MODEL_DIR = {json.dumps(spec.model_dir)}", f"MIXTURE_OR_TASK_NAME = {json.dumps(spec.mixture)}",
            f"TASK_FEATURE_LENGTHS = {json.dumps(spec.lengths)}", f"TRAIN_STEPS = {spec.train_steps}",
            f"BATCH_SIZE = {spec.batch_size}", f"RATIONALE_WEIGHT = {spec.rationale_weight}",
            f"LOSS_MODE = {json.dumps(spec.loss_mode)}", f"SPM_PATH = {json.dumps(spec.spm_path)}",
            f"DATA_FRACTION = {spec.fraction}", f"SEED = {spec.seed}", f"EVAL_EVERY = {spec.eval_every}",
            f"LEARNING_RATE = {spec.learning_rate}", f"T5Config.vocab_size = {spec.vocab_size}",
            f"INITIAL_CHECKPOINT_PATH = {json.dumps(spec.initial_checkpoint)}",
            f"EARLY_STOPPING_PATIENCE = {spec.early_stopping_patience}", f"DATA_DIR = {json.dumps(spec.data_dir)}"]


@pytest.fixture(autouse=True)
def clean_gin():
    with configs.gin_scope():
        yield


def test_cell_configs_equal_the_demo_gin_recipe():
    from_gin = configs.configs_from_gin([MODEL, "gin/runs/demo.gin"], demo_gin_macros(SPEC))
    gin_data = (task_config.data_dir(), task_config.vocabulary_path(), task_config.data_options())
    built = runner.train_configs(SPEC)
    assert built == from_gin
    assert (task_config.data_dir(), task_config.vocabulary_path(), task_config.data_options()) == gin_data
    assert task_config.data_options().fraction == 0.25


def test_a_cell_with_length_buckets_trains_on_them():
    assert runner.train_configs(SPEC).run.length_bucket_window == 0
    assert runner.train_configs(dataclasses.replace(SPEC, length_bucket_window=32)).run.length_bucket_window == 32


def test_sweep_bindings_override_the_built_configs_and_end_with_the_cell():
    spec = dataclasses.replace(SPEC, bindings=(
        "T5Config.dtype = 'bfloat16'", "T5Config.vocab_size = 384", "RunConfig.log_every = 7",
        "OptimizerConfig.warmup_steps = 3", "LossConfig.z_loss = 0.0", "MeshConfig.fsdp = 2",
        "tasks.config.data_options.rationale_coverage = 0.5"))
    cell = runner.train_configs(spec)
    assert (cell.model.dtype, cell.model.vocab_size, cell.run.log_every) == ("bfloat16", 384, 7)
    assert (cell.optimizer.warmup_steps, cell.loss.z_loss, cell.mesh.fsdp) == (3, 0.0, 2)
    assert cell.optimizer.learning_rate == SPEC.learning_rate  # fields not bound keep the spec's
    assert task_config.data_options().rationale_coverage == 0.5
    plain = runner.train_configs(SPEC)  # the next cell starts from its own spec only
    assert (plain.model.vocab_size, plain.run.log_every, plain.optimizer.warmup_steps) == (256, 25, 20)
    assert task_config.data_options().rationale_coverage == 1.0


def test_a_misspelt_sweep_macro_is_an_error():
    with pytest.raises(InputError, match="TRAIN_STEPZ"):
        runner.train_configs(dataclasses.replace(SPEC, bindings=("TRAIN_STEPZ = 5",)))

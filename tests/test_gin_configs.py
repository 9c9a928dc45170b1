"""Every gin file under gin/ parses and configures what it promises (model sizes: test_model_gin.py)."""
from __future__ import annotations

import glob
import os

import gin
import pytest

from t5x_sbs.trainer import configs, optimizers, precompile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = "gin/models/t5_1_1/tiny.gin"
RUN_MACROS = ["MODEL_DIR = '/tmp/gin_test'", "MIXTURE_OR_TASK_NAME = 'svamp_sbs_llm'"]
# demo.gin binds every macro itself (the runner builds the same recipe in Python: test_experiments_runner.py).
DEMO_MACROS = RUN_MACROS + ["TASK_FEATURE_LENGTHS = {'inputs': 64, 'targets': 32}", "TRAIN_STEPS = 5",
                            "BATCH_SIZE = 8", "RATIONALE_WEIGHT = 0.5", "LOSS_MODE = 'paired'", "SPM_PATH = None",
                            "DATA_FRACTION = 1.0", "SEED = 3", "EVAL_EVERY = 5", "LEARNING_RATE = 1e-3"]
# run file -> (λ, loss mode) it must configure
RUNS = {"finetune": (0.0, "mixture"), "distill": (0.0, "mixture"), "sbs": (1.0, "mixture"),
        "eval": (0.0, "mixture"), "infer": (0.0, "mixture"), "demo": (0.5, "paired"),
        "pretrain": (0.0, "mixture")}


def gin_files(folder):
    return sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "gin", folder, "*.gin")))


def parse(files, bindings=()):
    gin.clear_config()
    configs.parse_gin(files, list(bindings), [REPO])


def test_every_run_file_is_listed():
    assert {os.path.basename(p)[:-4] for p in gin_files("runs")} == set(RUNS)


@pytest.mark.parametrize("path", gin_files("runs"))
def test_run_configs_parse_and_build_their_configs(path):
    name = os.path.basename(path)[:-4]
    parse([MODEL, path], DEMO_MACROS if name == "demo" else RUN_MACROS)
    built = configs.from_gin()  # what main builds once and passes down
    run, loss, opt = built.run, built.loss, built.optimizer
    assert (loss.rationale_weight, run.loss_mode) == RUNS[name]
    assert run.model_dir == "/tmp/gin_test" and run.mixture_or_task_name == "svamp_sbs_llm"
    assert run.train_steps > 0 and run.batch_size > 0 and set(run.task_feature_lengths) == {"inputs", "targets"}
    assert run.interval("eval") >= 1 and run.interval("checkpoint") >= 1
    assert opt.name in optimizers.OPTIMIZERS and built.model.d_model == 64
    built.mesh.shape(8)
    if name in ("eval", "infer"):
        cfg = configs.EvalConfig()
        assert cfg.split == "test" and cfg.checkpoint_path == "/tmp/gin_test"
        assert cfg.output_path is None


def test_run_macros_override_from_flags():
    parse([MODEL, "gin/runs/sbs.gin"], RUN_MACROS + ["RATIONALE_WEIGHT = 0.25", "LOSS_MODE = 'paired'",
                                                     "TRAIN_STEPS = 7", "EVAL_EVERY = 2", "CHECKPOINT_EVERY = 3"])
    built = configs.from_gin()
    run = built.run
    assert (built.loss.rationale_weight, run.loss_mode, run.train_steps) == (0.25, "paired", 7)
    assert (run.interval("eval"), run.interval("infer"), run.interval("checkpoint")) == (2, 2, 3)


@pytest.mark.parametrize("path", gin_files("partitioning"))
def test_partitioning_presets(path):
    parse([path])
    shape = configs.from_gin(model_dir="", mixture_or_task_name="").mesh.shape(8)
    expected = {"dp.gin": (8, 1, 1), "fsdp.gin": (1, 8, 1), "fsdp_tp.gin": (1, 4, 2), "mesh.gin": (8, 1, 1)}
    assert shape == expected[os.path.basename(path)]


@pytest.mark.parametrize("path", gin_files("hardware"))
def test_hardware_files_set_a_peak(path):
    parse([MODEL, "gin/runs/finetune.gin", path], RUN_MACROS)
    assert configs.from_gin().run.peak_flops_per_device >= 1e11


def test_configs_from_gin_parses_in_isolation():
    """What an earlier run bound does not leak into the next run's typed configs."""
    gin.clear_config()
    gin.parse_config("RunConfig.seed = 7")
    try:
        built = configs.configs_from_gin([MODEL, "gin/runs/sbs.gin"], RUN_MACROS, [REPO])
        assert built.run.seed == 0 and built.model.d_model == 64 and built.run.model_dir == "/tmp/gin_test"
    finally:
        gin.clear_config()


def test_model_config_from_gin_clears_gin_after():
    model = configs.model_config_from_gin([MODEL], ["T5Config.vocab_size = 256"], [REPO])
    assert (model.d_model, model.vocab_size) == (64, 256)
    assert gin.config_str().strip() == ""


def test_precompile_needs_no_output_macros():
    gin.clear_config()
    try:
        configs.parse_gin([MODEL, "gin/runs/sbs.gin"], [], [REPO], defaults=precompile.UNSET_RUN_MACRO_DEFAULTS)
        assert precompile.compile_configs(configs.from_gin()).run.model_dir == ""
    finally:
        gin.clear_config()

"""An installed wheel works outside the repo: its gin files are package data, `tasks` is installed
as `t5x_sbs.tasks` (never a bare global `tasks`), and `python -m t5x_sbs.main` with the shipped
gin files pretrains a tiny model from a working directory that has no gin/ folder.

The wheel is built from a copy of the tracked files (so the checkout gets no build/), installed
with --no-deps into a target directory, and run with that directory first on PYTHONPATH; the
dependencies are this venv's."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def run(cmd, cwd, env=None, timeout=600):
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("wheel")
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    for name in files:
        if (REPO / name).is_file():
            (root / "src" / name).parent.mkdir(parents=True, exist_ok=True)
            (root / "src" / name).write_bytes((REPO / name).read_bytes())
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(root / "src"),
         "-w", str(root / "dist")], cwd=root)
    wheel = next((root / "dist").glob("t5x_sbs-*.whl"))
    run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(root / "site"), str(wheel)], cwd=root)
    return root / "site"


def outside_env(site_dir) -> dict:
    env = dict(os.environ, PYTHONPATH=str(site_dir), JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    return env


def test_wheel_holds_the_package_data_and_no_bare_tasks(site):
    assert not (site / "tasks").exists() and not (site / "gin").exists()
    assert (site / "t5x_sbs" / "gin" / "runs" / "pretrain.gin").is_file()
    assert (site / "t5x_sbs" / "configs" / "sweeps" / "arith_cpu.json").is_file()
    assert (site / "t5x_sbs" / "tasks" / "catalog.py").is_file()


def test_installed_wheel_pretrains_with_the_shipped_gin_files(site, tmp_path):
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = run([sys.executable, "-c", "import t5x_sbs, t5x_sbs.tasks, t5x_sbs.gin_paths as g; "
                 "print(t5x_sbs.__file__); print(g.shipped_root())"], cwd=work, env=outside_env(site)).split()
    assert where[0].startswith(str(site)) and where[1] == str(site / "t5x_sbs"), where
    (work / "text.txt").write_text("".join(f"the {i} cats sat on {i + 1} mats and {i + 2} dogs ran away\n"
                                           for i in range(200)))
    model_dir = work / "pt"
    run([sys.executable, "-m", "t5x_sbs.main", "--run_mode=train",
         "--gin_file=gin/models/t5_1_1/tiny.gin", "--gin_file=gin/runs/pretrain.gin",
         "--gin.TRAIN_STEPS=2", f"--gin.MODEL_DIR={json.dumps(str(model_dir))}",
         "--gin.MIXTURE_OR_TASK_NAME='text_span_corruption'", "--gin.BATCH_SIZE=4",
         "--gin.TASK_FEATURE_LENGTHS={'inputs': 32, 'targets': 8}", "--gin.RunConfig.auto_vocab_size=150",
         "--gin.T5Config.vocab_size=384", f"--gin.tasks.pretrain.text_files.paths=[{json.dumps(str(work / 'text.txt'))}]",
         "--gin.tasks.pretrain.options.validation_fraction=0.05", "--gin.EVAL_EVERY=2", "--gin.RunConfig.eval_batches=1"],
        cwd=work, env=outside_env(site))
    assert (model_dir / "2").is_dir() and (model_dir / "config.json").is_file() and (model_dir / "spiece.model").is_file()

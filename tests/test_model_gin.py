"""Every gin model file parses; parameter counts equal HF's (shapes only); model-info and smoke CLIs."""
import json
import pathlib
import subprocess
import sys

import gin
import pytest

from t5x_sbs.models.config import T5Config
from t5x_sbs.models.info import param_count

REPO = pathlib.Path(__file__).resolve().parents[1]
GIN_MODELS = REPO / "gin" / "models"
# transformers' T5ForConditionalGeneration.num_parameters() for these architectures.
HF_COUNTS = {"small": 76_961_152, "base": 247_577_856, "large": 783_150_080, "xl": 2_849_757_184,
             "xxl": 11_135_332_352}
T5_V1_0_BASE = 222_903_552  # t5-base


def config_of(path) -> T5Config:
    gin.clear_config()
    try:
        gin.parse_config_file(str(path))
        return T5Config.from_gin()
    finally:
        gin.clear_config()


@pytest.mark.parametrize("path", sorted(GIN_MODELS.rglob("*.gin")), ids=lambda p: str(p.relative_to(GIN_MODELS)))
def test_gin_model_parses_with_known_param_count(path):
    config = config_of(path)
    if path.parent.name in ("t5_1_1", "flan_t5"):
        assert config.feed_forward_proj == "gated-gelu" and not config.tie_word_embeddings
        if path.stem in HF_COUNTS:
            assert param_count(config) == HF_COUNTS[path.stem]
    elif path.parent.name == "t5_1_0":
        assert config.feed_forward_proj == "relu" and config.tie_word_embeddings
        assert param_count(config) == T5_V1_0_BASE


def test_every_family_has_every_size():
    for family in ("t5_1_1", "flan_t5"):
        assert {p.stem for p in (GIN_MODELS / family).glob("*.gin")} == {"tiny", *HF_COUNTS}
    assert (GIN_MODELS / "t5_1_0" / "base.gin").exists()


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "t5x_sbs.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={**__import__("os").environ, "JAX_PLATFORMS": "cpu"})


def test_model_info_xxl_json():
    result = run_cli("model-info", "--gin_file", "gin/models/t5_1_1/xxl.gin", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["params"] == HF_COUNTS["xxl"] and info["config"]["d_model"] == 4096
    assert info["bytes"] == 4 * HF_COUNTS["xxl"]


def test_smoke_prints_forward_and_decode():
    result = run_cli("smoke", "--batch_size", "1", "--max_decode_length", "4")
    assert result.returncode == 0, result.stderr
    assert "forward: logits (1, 12, 512) float32, finite=True" in result.stdout
    assert "row 0: tokens [" in result.stdout


@pytest.mark.parametrize("path", sorted((REPO / "configs").rglob("*.gin")), ids=lambda p: p.name)
def test_experiment_model_files_parse(path, monkeypatch):
    """The demo's students and the sweeps' sizes (configs/) parse as the experiments read them."""
    from t5x_sbs.trainer import configs

    monkeypatch.chdir(REPO)
    config = configs.model_config_from_gin([str(path.relative_to(REPO))], [])
    assert config.d_model == config.num_heads * config.d_kv
    if path.name.startswith("demo_student"):  # the default (d64) and the second width (d128)
        assert config.d_model == {"demo_student_d64.gin": 64, "demo_student.gin": 128}[path.name]

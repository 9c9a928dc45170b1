"""gin/hardware/*.gin: every file parses and binds a peak the trainer's MFU picks up."""
import pathlib

import gin
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
HARDWARE = sorted((REPO / "gin/hardware").glob("*.gin"))
EXPECTED_TFLOPS = {"h100": 989.4, "h200": 989.4, "a100": 312, "v4": 275, "v5e": 197, "v5p": 459, "cpu": 0.1}


def test_the_table_covers_the_documented_devices():
    assert {p.stem for p in HARDWARE} == set(EXPECTED_TFLOPS)


@pytest.mark.parametrize("path", HARDWARE, ids=lambda p: p.stem)
def test_each_file_binds_its_peak(path):
    gin.clear_config()
    try:
        gin.parse_config_file(str(path))
        assert gin.query_parameter("%PEAK_FLOPS_PER_DEVICE") == pytest.approx(EXPECTED_TFLOPS[path.stem] * 1e12)
    finally:
        gin.clear_config()


def test_run_config_reads_the_peak_after_mains_default():
    """main binds PEAK_FLOPS_PER_DEVICE = None first; a hardware file given later wins."""
    from t5x_sbs.trainer import configs, train_loop

    gin.clear_config()
    try:
        configs.parse_gin(["gin/runs/sbs.gin", "gin/hardware/v5p.gin"],
                       ["MODEL_DIR = '/tmp/x'", "MIXTURE_OR_TASK_NAME = 'x'"])
        assert train_loop.RunConfig().peak_flops_per_device == 459e12
    finally:
        gin.clear_config()

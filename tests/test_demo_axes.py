"""`python -m t5x_sbs.experiments.demo_axes`: bad cells are refused when parsed, before any training."""
import argparse
import re

import pytest

from t5x_sbs.cli import demo_axes


def _parse(*argv):
    parser = argparse.ArgumentParser()
    demo_axes.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_cells_parse():
    args = _parse("--methods", "sbs_teacher@shared_encoder,standard_finetune", "--fractions", "0.5,0.125")
    assert args.methods == ["sbs_teacher@shared_encoder", "standard_finetune"] and args.fractions == [0.5, 0.125]
    assert _parse().fractions == [0.5, 0.25] and _parse().seeds == "0,1,2"


@pytest.mark.parametrize("argv, message", [
    (("--fractions", "0"), "fractions in \\(0, 1\\]"), (("--fractions", "half"), "fractions in"),
    (("--methods", "sbs_teacher@two_pass"), "LOSS_MODE from"), (("--methods", "cot"), "METHOD from"),
    (("--seeds", "1,1"), "twice"), (("--train_steps", "0"), "")])
def test_bad_cells_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _parse(*argv)
    assert exit_info.value.code == 2 and re.search(message, capsys.readouterr().err)


def test_rationale_weights_parse_and_bad_ones_are_refused(capsys):
    assert _parse().rationale_weights == [1.0] and _parse("--rationale_weights", "0.5,2").rationale_weights == [0.5, 2.0]
    for bad in ("-1", "1,1", "half", ""):
        with pytest.raises(SystemExit):
            _parse("--rationale_weights", bad)
        assert "distinct comma-separated" in capsys.readouterr().err

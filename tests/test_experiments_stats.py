"""The main job's confidence intervals (t5x_sbs.experiments.stats)."""
import numpy as np
import pytest

from t5x_sbs.experiments import stats


def test_mean_ci_is_the_student_t_interval():
    interval = stats.mean_ci([0.5, 0.6, 0.7])
    # mean 0.6, sd 0.1, t(0.975, 2) = 4.303: half-width 0.1 * 4.303 / sqrt(3) = 0.2484
    assert interval.mean == pytest.approx(0.6) and interval.high - interval.mean == pytest.approx(0.2484, abs=1e-4)
    assert str(interval) == "60.0 ± 24.8" and str(stats.mean_ci([0.25])) == "25.0"


def test_paired_bootstrap_sees_a_real_difference_and_not_a_tie():
    rng = np.random.default_rng(0)
    base = rng.random((3, 400)) < 0.5
    better = base | (rng.random((3, 400)) < 0.3)  # right wherever base is, and on ~30 % more
    result = stats.paired_bootstrap(better, base)
    assert result.low > 0 and result.p_value < 0.001 and result.questions == 400 and result.seeds == (3, 3)
    assert result.p_value == 0 and "p < 0.0002 (paired bootstrap over 400" in str(result)  # bounded, not "p = 0"
    tie = stats.paired_bootstrap(base, base)
    assert (tie.difference, tie.low, tie.high, tie.p_value) == (0.0, 0.0, 0.0, 1.0)
    noise = stats.paired_bootstrap(rng.random((3, 400)) < 0.5, rng.random((3, 400)) < 0.5)
    assert noise.low < 0 < noise.high and noise.p_value > 0.05
    with pytest.raises(ValueError, match="same test questions"):
        stats.paired_bootstrap(base[:, :10], base[:, :11])

"""PSR / deflated Sharpe against the paper's worked example, hand-worked moments and scipy."""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import polars as pl
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats

from operators.analytics.sharpe_stats import (
    EULER_GAMMA,
    deflated_sharpe,
    expected_max_sharpe,
    probabilistic_sharpe,
    psr_from_moments,
    sample_moments,
)
from tests.paths import BARS_2024_01

R5 = [0.1, -0.1, 0.1, -0.1, 0.2]


@cache
def btc_hourly_returns() -> np.ndarray:
    close = (
        pl.read_parquet(BARS_2024_01)
        .filter(pl.col("symbol") == "BTCUSDT")
        .sort("open_time")["close"]
        .to_numpy()
    )
    hourly = close[59::60]
    return hourly[1:] / hourly[:-1] - 1.0


def scipy_psr(r: np.ndarray, sr_star: float) -> float:
    """Written separately: scipy moments and normal cdf."""
    sr = np.mean(r) / np.std(r, ddof=1)
    g3 = stats.skew(r)
    g4 = stats.kurtosis(r, fisher=False)
    z = (sr - sr_star) * math.sqrt(len(r) - 1) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2)
    return float(stats.norm.cdf(z))


def test_deflated_sharpe_paper_example() -> None:
    # Bailey & López de Prado (2014), "The Deflated Sharpe Ratio": N = 100 trials, annualised
    # SR variance 0.5, T = 1250 daily returns, annual SR 2.5, skew -3, kurtosis 10 -> SR0 ≈
    # 0.1132 per day (1.7894 annualised) and DSR ≈ 0.9004.
    assert expected_max_sharpe(100, 0.5) == pytest.approx(1.7894, abs=1e-4)
    sr0 = expected_max_sharpe(100, 0.5 / 250)
    assert sr0 == pytest.approx(0.1132, abs=1e-4)
    dsr = psr_from_moments(2.5 / math.sqrt(250), 1250, -3.0, 10.0, sr0)
    assert dsr == pytest.approx(0.9004, abs=1e-4)


def test_psr_hand_worked_five_returns() -> None:
    # mean .04, var (ddof 1) .018; population m2 = .0144, m3 = -.000192, m4 = .00028992.
    sr, n, skew, kurt = sample_moments(R5)
    assert n == 5
    assert sr == pytest.approx(0.04 / math.sqrt(0.018), rel=1e-12)
    assert skew == pytest.approx(-0.000192 / 0.0144**1.5, rel=1e-10)  # = -1/9
    assert skew == pytest.approx(-1 / 9, rel=1e-10)
    assert kurt == pytest.approx(0.00028992 / 0.0144**2, rel=1e-10)
    z = sr * 2 / math.sqrt(1 + sr / 9 + (kurt - 1) / 4 * sr**2)
    assert probabilistic_sharpe(R5) == pytest.approx(0.5 * (1 + math.erf(z / math.sqrt(2))))
    assert probabilistic_sharpe(R5) == pytest.approx(0.72044, abs=1e-5)


def test_psr_real_returns_matches_scipy() -> None:
    r = btc_hourly_returns()
    assert len(r) > 700
    for sr_star in (0.0, 0.01, -0.02):
        assert probabilistic_sharpe(r, sr_star) == pytest.approx(scipy_psr(r, sr_star), rel=1e-9)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-0.2, 0.2), min_size=3, max_size=80), st.floats(-0.5, 0.5))
def test_psr_matches_scipy_property(r: list[float], sr_star: float) -> None:
    a = np.asarray(r)
    assume(np.std(a, ddof=1) > 1e-6)  # zero stdev raises: tested below
    assert probabilistic_sharpe(a, sr_star) == pytest.approx(scipy_psr(a, sr_star), abs=1e-9)


def test_expected_max_sharpe_matches_scipy_formula() -> None:
    for n in (2, 10, 100, 10_000):
        for v in (0.0, 1e-4, 0.5):
            want = math.sqrt(v) * (
                (1 - np.euler_gamma) * stats.norm.ppf(1 - 1 / n)
                + np.euler_gamma * stats.norm.ppf(1 - 1 / (n * math.e))
            )
            assert expected_max_sharpe(n, v) == pytest.approx(want, rel=1e-9, abs=1e-15)
    assert abs(EULER_GAMMA - np.euler_gamma) < 1e-15
    assert expected_max_sharpe(1, 0.5) == 0.0
    vals = [expected_max_sharpe(n, 1.0) for n in (2, 5, 50, 500)]
    assert vals == sorted(vals)  # more trials, luckier best


def test_deflated_sharpe_one_trial_is_psr_and_more_trials_deflate() -> None:
    r = btc_hourly_returns()
    assert deflated_sharpe(r, 1, 0.01) == probabilistic_sharpe(r, 0.0)
    v = 0.05**2
    dsr = [deflated_sharpe(r, n, v) for n in (1, 10, 100, 1000)]
    assert dsr == sorted(dsr, reverse=True) and dsr[-1] < dsr[0]
    assert deflated_sharpe(r, 100, v) == pytest.approx(
        scipy_psr(r, expected_max_sharpe(100, v)), rel=1e-9
    )


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: probabilistic_sharpe([0.01, 0.01, 0.01]), "zero standard deviation"),
        (lambda: probabilistic_sharpe([0.01]), "at least 2"),
        (lambda: probabilistic_sharpe([0.01, float("nan")]), "NaN"),
        (lambda: probabilistic_sharpe(np.zeros((2, 2))), "one-dimensional"),
        (lambda: expected_max_sharpe(0, 0.1), "n_trials"),
        (lambda: expected_max_sharpe(2.5, 0.1), "integer"),  # type: ignore[arg-type]
        (lambda: expected_max_sharpe(10, -0.1), "sr_variance"),
        (lambda: psr_from_moments(0.1, 100, 0.0, 0.0), "non-excess"),
        (lambda: psr_from_moments(0.1, 1, 0.0, 3.0), "n >= 2"),
        (lambda: psr_from_moments(float("inf"), 10, 0.0, 3.0), "finite"),
    ],
)
def test_bad_input_raises(call: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()  # type: ignore[operator]

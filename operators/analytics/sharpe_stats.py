"""Probabilistic and deflated Sharpe ratios (Bailey & López de Prado 2012, 2014).

All Sharpe ratios here are per period (not annualised): SR = mean / stdev (ddof=1) of the
per-period returns, the same estimator as `curve.CurveMetrics.sharpe` before its sqrt(periods per
year). Skewness γ3 and (non-excess) kurtosis γ4 are the population moments (ddof=0), as in the
papers and scipy's default `skew` / `kurtosis(fisher=False)`. The normal cdf and its inverse come
from the standard library (`statistics.NormalDist`): deterministic, no scipy needed.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

EULER_GAMMA = 0.5772156649015329
_NORMAL = NormalDist()


def _returns_array(returns: npt.ArrayLike) -> npt.NDArray[np.float64]:
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 1:
        raise ValueError(f"returns must be one-dimensional, got shape {r.shape}")
    if len(r) < 2:
        raise ValueError(f"need at least 2 returns for a Sharpe ratio, got {len(r)}")
    if not np.all(np.isfinite(r)):
        raise ValueError("returns contain NaN or inf: clean the equity curve first")
    return r


def sample_moments(returns: npt.ArrayLike) -> tuple[float, int, float, float]:
    """(per-period SR, n, skewness, non-excess kurtosis) of the returns; raises on zero stdev."""
    r = _returns_array(returns)
    mean = float(np.mean(r))
    centred = r - mean
    m2 = float(np.mean(centred**2))
    sd = float(np.std(r, ddof=1))
    if m2 <= 0.0 or sd == 0.0:
        raise ValueError("returns have zero standard deviation: the Sharpe ratio is undefined")
    skew = float(np.mean(centred**3)) / m2**1.5
    kurt = float(np.mean(centred**4)) / m2**2
    return mean / sd, len(r), skew, kurt


def psr_from_moments(
    sr: float, n: int, skew: float, kurt: float, sr_benchmark: float = 0.0
) -> float:
    """PSR = Φ((SR − SR*)·sqrt(n − 1) / sqrt(1 − γ3·SR + (γ4 − 1)/4·SR²)), SRs per period."""
    if n < 2:
        raise ValueError(f"PSR needs n >= 2 observations, got {n}")
    for name, v in (("sr", sr), ("skew", skew), ("kurt", kurt), ("sr_benchmark", sr_benchmark)):
        if not math.isfinite(v):
            raise ValueError(f"{name} must be finite, got {v}")
    if kurt < 1.0 - 1e-9:  # a two-point sample has exactly 1, give or take rounding
        raise ValueError(f"kurtosis is non-excess and at least 1, got {kurt} (excess passed?)")
    var = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr * sr
    if var <= 0.0:
        # Only a two-point return distribution with skew·SR = 2 gets here: no spread to test.
        raise ValueError(f"PSR variance term {var} <= 0 (skew={skew}, kurt={kurt}, sr={sr})")
    return _NORMAL.cdf((sr - sr_benchmark) * math.sqrt(n - 1) / math.sqrt(var))


def probabilistic_sharpe(returns: npt.ArrayLike, sr_benchmark: float = 0.0) -> float:
    """Probability that the true per-period SR exceeds `sr_benchmark` (per period, not annual)."""
    sr, n, skew, kurt = sample_moments(returns)
    return psr_from_moments(sr, n, skew, kurt, sr_benchmark)


def expected_max_sharpe(n_trials: int, sr_variance: float) -> float:
    """Expected maximum SR of `n_trials` independent zero-skill trials whose SRs have variance
    `sr_variance`: sqrt(V)·((1−γ)Φ⁻¹(1−1/N) + γΦ⁻¹(1−1/(N·e))). One trial selects nothing, so 0
    (the formula's Φ⁻¹(0) would be −inf). Same units as the SRs behind `sr_variance`."""
    if isinstance(n_trials, bool) or not isinstance(n_trials, int | np.integer):
        raise ValueError(f"n_trials must be an integer, got {n_trials!r}")
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if not math.isfinite(sr_variance) or sr_variance < 0.0:
        raise ValueError(f"sr_variance must be finite and >= 0, got {sr_variance}")
    if n_trials == 1:
        return 0.0
    n = float(n_trials)
    z = (1.0 - EULER_GAMMA) * _NORMAL.inv_cdf(1.0 - 1.0 / n) + EULER_GAMMA * _NORMAL.inv_cdf(
        1.0 - 1.0 / (n * math.e)
    )
    return math.sqrt(sr_variance) * z


def deflated_sharpe(returns: npt.ArrayLike, n_trials: int, sr_variance: float) -> float:
    """PSR against the SR the best of `n_trials` would reach by luck; `sr_variance` is the
    variance of the trials' per-period (non-annualised) SRs. n_trials = 1 gives PSR(0)."""
    return probabilistic_sharpe(returns, expected_max_sharpe(n_trials, sr_variance))

"""Fixed-threshold 3-class labels on the h-bar forward simple return.

r[t] = close[t+h] / close[t] - 1;  label = +1 if r > thr, -1 if r < -thr, else 0 (strict
inequalities: a return of exactly +-thr is 0). Missing (last h bars, non-finite closes) -> NaN;
the output is float64 in {-1.0, 0.0, +1.0, NaN} (see forward.py for the package convention).
"""

from __future__ import annotations

import math

import numpy as np

from offline.labels.forward import forward_ratio


def check_fraction(name: str, x: float) -> float:
    """Validate a strictly positive return fraction (math.inf allowed: disables a barrier)."""
    if isinstance(x, bool) or not isinstance(x, int | float | np.floating | np.integer):
        raise ValueError(f"{name} must be a number > 0, got {x!r}")
    if math.isnan(x) or x <= 0:
        raise ValueError(f"{name} must be > 0, got {x!r}")
    return float(x)


def forward_simple_return(close: np.ndarray, h: int) -> np.ndarray:
    """close[t+h] / close[t] - 1 per t, NaN for the last h bars and non-finite values."""
    out = forward_ratio(close, h) - 1.0
    out[~np.isfinite(out)] = np.nan
    return out


def threshold_labels(close: np.ndarray, h: int, thr: float) -> np.ndarray:
    """3-class label per t in {-1, 0, +1} as float64, NaN where missing."""
    thr = check_fraction("thr", thr)
    if math.isinf(thr):
        raise ValueError("thr must be finite")
    r = forward_simple_return(close, h)
    out = np.where(r > thr, 1.0, np.where(r < -thr, -1.0, 0.0))
    out[np.isnan(r)] = np.nan
    return out

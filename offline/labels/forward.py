"""Forward log returns: fwd_ret_h[t] = ln(close[t+h] / close[t]).

Labels are forward-looking by construction; the label at t depends on close[t] and close[t+h]
only. Missing-value convention of the whole `offline.labels` package (numpy level): float
outputs are NaN where the label is missing (horizon past the end of the series, non-finite
inputs), index outputs are int64 with -1 where missing. `offline.labels.spec.compute` turns both
into polars nulls.
"""

from __future__ import annotations

import numpy as np


def check_horizon(h: int) -> int:
    """Validate a horizon in bars (a positive int); return it."""
    if isinstance(h, bool) or not isinstance(h, int | np.integer) or h < 1:
        raise ValueError(f"horizon h must be an int >= 1 bar, got {h!r}")
    return int(h)


def horizon_end(n: int, h: int) -> np.ndarray:
    """End index t+h per t (int64), -1 where t+h is past the last bar n-1."""
    h = check_horizon(h)
    end = np.arange(n, dtype=np.int64) + h
    end[end >= n] = -1
    return end


def forward_ratio(close: np.ndarray, h: int) -> np.ndarray:
    """close[t+h] / close[t] per t, NaN for the last h bars (non-finite values left as they are)."""
    h = check_horizon(h)
    c = np.asarray(close, dtype=np.float64)
    out = np.full(c.shape[0], np.nan)
    if c.shape[0] > h:
        with np.errstate(divide="ignore", invalid="ignore"):
            out[:-h] = c[h:] / c[:-h]
    return out


def forward_log_return(close: np.ndarray, h: int) -> np.ndarray:
    """ln(close[t+h] / close[t]) per t, NaN for the last h bars (and for non-positive closes)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out: np.ndarray = np.log(forward_ratio(close, h))
    out[~np.isfinite(out)] = np.nan
    return out

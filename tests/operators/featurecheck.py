"""Shared checks for the feature families: run a feature over real bars one at a time and compare
every column with an independent reference (TA-Lib or numpy written separately in the tests).

Tolerance: |ours - ref| <= RTOL * max(|ref|, median |ref| of the column). Pure relative tolerance
is ill-posed where a value crosses zero (MACD histogram, momentum, z-scores), so the floor is the
column's typical magnitude; everywhere else it is plain relative tolerance 1e-9.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from talib import abstract

from schemas.messages import Bar

RTOL = 1e-9


def talib_lookback(func: str, **params: object) -> int:
    """TA-Lib's own lookback (its first non-NaN index) of `func` with these parameters."""
    f = abstract.Function(func)  # type: ignore[attr-defined]  # built at import time
    f.set_parameters(**params)
    return int(f.lookback)


def arrays(bars: Sequence[Bar]) -> dict[str, np.ndarray]:
    """Columns of a bar sequence as float64 arrays (ts as int64 ns)."""
    out = {
        f: np.array([getattr(b, f) for b in bars], dtype=np.float64)
        for f in ("open", "high", "low", "close", "volume", "buy_volume")
    }
    out["n_trades"] = np.array([b.n_trades for b in bars], dtype=np.float64)
    out["ts"] = np.array([b.ts_event for b in bars], dtype=np.int64)
    return out


def _row(v: Any) -> tuple[float, ...]:
    return tuple(v) if isinstance(v, tuple) else (v,)


def stream(
    make: Callable[[], Any], bars: Sequence[Bar], refs: Sequence[Bar | None] | None = None
) -> np.ndarray:
    """Values after each bar, shape (len(bars), n_columns); `refs`: a pair feature's ref bars."""
    feat = make()
    if refs is None:
        rows = [_row(feat.update(b)) for b in bars]
    else:
        rows = [_row(feat.update(b, r)) for b, r in zip(bars, refs, strict=True)]
    got = np.array(rows, dtype=np.float64).reshape(len(bars), len(feat.columns))
    return got


def assert_column_matches(got: np.ndarray, ref: np.ndarray, warmup: int, label: str = "") -> None:
    """NaN exactly where the reference is NaN, all NaN before `warmup`, finite at `warmup`, and
    equal within tolerance everywhere else."""
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, label
    assert np.isnan(got[:warmup]).all(), f"{label}: value before the warm-up is complete"
    assert np.isnan(ref[:warmup]).all(), f"{label}: reference has values during our warm-up"
    assert warmup < len(got) and math.isfinite(got[warmup]), (
        f"{label}: no value at warm-up {warmup}"
    )
    nan_got, nan_ref = np.isnan(got), np.isnan(ref)
    if (nan_got != nan_ref).any():
        i = int(np.argmax(nan_got != nan_ref))
        raise AssertionError(f"{label}: NaN mismatch first at bar {i}: ours={got[i]} ref={ref[i]}")
    ok = ~nan_ref
    g, r = got[ok], ref[ok]
    assert np.isfinite(g).all() and np.isfinite(r).all(), f"{label}: infinite values"
    floor = float(np.median(np.abs(r))) if r.size else 0.0
    tol = RTOL * np.maximum(np.abs(r), floor)
    err = np.abs(g - r)
    if (err > tol).any():
        i = int(np.argmax(err - tol))
        raise AssertionError(
            f"{label}: {int((err > tol).sum())} bars off, worst at {i}: ours={g[i]!r} ref={r[i]!r}"
        )


def assert_matches(
    make: Callable[[], Any],
    bars: Sequence[Bar],
    refs: dict[str, np.ndarray],
    ref_bars: Sequence[Bar | None] | None = None,
) -> np.ndarray:
    """Every column of the feature equals its reference column; `feat.warmup` is the first valid
    index of every column whose reference has values there. Returns the streamed values."""
    feat = make()
    got = stream(make, bars, ref_bars)
    assert set(refs) == set(feat.columns), (sorted(refs), feat.columns)
    for j, col in enumerate(feat.columns):
        assert_column_matches(got[:, j], refs[col], feat.warmup, col)
    return got


def assert_prefix_stable(
    make: Callable[[], Any],
    bars: Sequence[Bar],
    full: np.ndarray,
    cuts: Sequence[int],
    ref_bars: Sequence[Bar | None] | None = None,
) -> None:
    """A fresh feature fed bars[:t] ends, bit for bit, on the full stream's row t-1."""
    for t in cuts:
        part = stream(make, bars[:t], None if ref_bars is None else ref_bars[:t])
        np.testing.assert_array_equal(part[-1], full[t - 1], err_msg=f"prefix t={t}")


def assert_pickle_resumes(
    make: Callable[[], Any],
    bars: Sequence[Bar],
    cuts: Sequence[int],
    ref_bars: Sequence[Bar | None] | None = None,
) -> None:
    """Pickling mid-stream and continuing gives the same values as never stopping."""
    full = stream(make, bars, ref_bars)
    for cut in cuts:
        feat = make()
        for i in range(cut):
            feat.update(bars[i]) if ref_bars is None else feat.update(bars[i], ref_bars[i])
        feat = pickle.loads(pickle.dumps(feat))
        rest = [
            _row(feat.update(bars[i]) if ref_bars is None else feat.update(bars[i], ref_bars[i]))
            for i in range(cut, len(bars))
        ]
        np.testing.assert_array_equal(np.array(rest, dtype=np.float64), full[cut:])

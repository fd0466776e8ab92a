"""Metrics of one equity curve: returns, drawdowns, annualised ratios, rolling Sharpe.

Conventions (crypto trades every day, so a year is 365 days of bars):
- `ts` are bar-close times (int ns UTC, strictly increasing), `equity[i]` the marked equity at
  `ts[i]`, `initial` the equity before the first point. The initial equity is placed one median
  step before `ts[0]` (the first bar's open), so n points give n returns over n steps.
- periods per year = NS_PER_YEAR / median step; annual return is arithmetic (mean × ppy);
  volatility, Sharpe and Sortino annualise by ppy / sqrt(ppy); risk-free rate 0.
- CAGR compounds over years = (end − start + one step) / NS_PER_YEAR and is None for a span under
  one day: compounding minutes to a year gives numbers nobody should read.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from operators.analytics.sharpe_stats import probabilistic_sharpe
from operators.performance import NS_PER_YEAR

NS_PER_DAY = 86_400 * 1_000_000_000

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


def check_initial(initial: float) -> float:
    v = float(initial)
    if not math.isfinite(v) or v <= 0.0:
        raise ValueError(f"initial equity must be finite and > 0, got {initial}")
    return v


def check_times(ts: npt.ArrayLike, name: str = "ts") -> I64:
    """int64 ns, one-dimensional, strictly increasing (floats would lose nanoseconds)."""
    t = np.asarray(ts)
    if t.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {t.shape}")
    if len(t) and not np.issubdtype(t.dtype, np.integer):
        raise ValueError(f"{name} must be integer ns UTC, got dtype {t.dtype}")
    t = t.astype(np.int64)
    if len(t) > 1 and not np.all(np.diff(t) > 0):
        bad = int(np.argmin(np.diff(t) > 0))
        raise ValueError(
            f"{name} must be strictly increasing: {name}[{bad}]={t[bad]} >= "
            f"{name}[{bad + 1}]={t[bad + 1]} (sort and de-duplicate the curve)"
        )
    return t


def check_curve(ts: npt.ArrayLike, equity: npt.ArrayLike, initial: float) -> tuple[I64, F64, float]:
    """Validated (ts, equity, initial): same length, equity finite and > 0."""
    t = check_times(ts)
    e = np.asarray(equity, dtype=np.float64)
    if e.ndim != 1 or len(e) != len(t):
        raise ValueError(f"equity has shape {e.shape} but ts has {len(t)} points")
    if not np.all(np.isfinite(e)):
        raise ValueError(f"equity has NaN/inf at index {int(np.argmin(np.isfinite(e)))}")
    if len(e) and float(np.min(e)) <= 0.0:
        i = int(np.argmin(e))
        raise ValueError(f"equity must be > 0 (returns undefined): equity[{i}]={e[i]}")
    return t, e, check_initial(initial)


def _returns(e: F64, initial: float) -> F64:
    prev = np.concatenate(([initial], e[:-1]))
    out: F64 = e / prev - 1.0
    return out


def returns(equity: npt.ArrayLike, initial: float) -> F64:
    """Simple per-bar returns, the first one against `initial`."""
    e = np.asarray(equity, dtype=np.float64)
    _, e, ini = check_curve(np.arange(len(e), dtype=np.int64), e, initial)
    return _returns(e, ini)


def periods_per_year(ts: npt.ArrayLike) -> float:
    """NS_PER_YEAR / median step between consecutive points."""
    t = check_times(ts)
    if len(t) < 2:
        raise ValueError(f"need at least 2 timestamps for a bar step, got {len(t)}")
    return NS_PER_YEAR / float(np.median(np.diff(t)))


def _step(t: I64) -> int:
    return int(np.median(np.diff(t)))


def drawdown(equity: npt.ArrayLike, initial: float) -> F64:
    """equity / running peak − 1 (≤ 0); the running peak starts at `initial`."""
    e = np.asarray(equity, dtype=np.float64)
    _, e, ini = check_curve(np.arange(len(e), dtype=np.int64), e, initial)
    peak = np.maximum.accumulate(np.concatenate(([ini], e)))[1:]
    out: F64 = e / peak - 1.0
    return out


@dataclass(frozen=True)
class DrawdownInfo:
    max_drawdown: float  # positive fraction
    duration_ns: int  # longest peak-to-recovery (or peak-to-end) time over all drawdowns
    start_ns: int | None  # peak before the deepest trough (None when never under water)
    trough_ns: int | None
    end_ns: int | None  # first time back at that peak; None if not recovered


def drawdown_info(ts: npt.ArrayLike, equity: npt.ArrayLike, initial: float) -> DrawdownInfo:
    """Deepest drawdown and longest time under water; `initial` sits one step before ts[0]."""
    t, e, ini = check_curve(ts, equity, initial)
    if len(t) < 2:
        raise ValueError(f"need at least 2 points for drawdown times, got {len(t)}")
    times = np.concatenate(([t[0] - _step(t)], t))
    curve = np.concatenate(([ini], e))
    peak = np.maximum.accumulate(curve)
    at_peak = np.flatnonzero(curve >= peak)  # index 0 always: it is its own peak
    # Consecutive at-peak points more than one apart bracket an underwater spell.
    gaps = np.diff(at_peak)
    spells = times[at_peak[1:][gaps > 1]] - times[at_peak[:-1][gaps > 1]]
    tail = int(times[-1] - times[at_peak[-1]]) if at_peak[-1] < len(curve) - 1 else 0
    duration = max(int(spells.max()) if len(spells) else 0, tail)
    dd = curve / peak - 1.0
    trough = int(np.argmin(dd))
    max_dd = -float(dd[trough])
    if max_dd <= 0.0:
        return DrawdownInfo(0.0, 0, None, None, None)
    start = int(at_peak[np.searchsorted(at_peak, trough) - 1])
    back = np.flatnonzero(curve[trough:] >= peak[trough])
    end = int(times[trough + int(back[0])]) if len(back) else None
    return DrawdownInfo(max_dd, duration, int(times[start]), int(times[trough]), end)


@dataclass(frozen=True)
class CurveMetrics:
    start_ns: int  # first bar close
    end_ns: int  # last bar close
    n_bars: int
    initial_equity: float
    final_equity: float
    total_return: float
    annual_return: float  # arithmetic: mean per-bar return × periods per year
    cagr: float | None  # None for a span under one day
    volatility: float  # annualised stdev of per-bar returns (ddof=1)
    sharpe: float | None  # None when the returns have zero stdev
    sortino: float | None  # None when no return is negative
    calmar: float | None  # cagr / max_drawdown; None without a drawdown or a cagr
    max_drawdown: float  # positive fraction
    max_drawdown_duration_ns: int
    max_drawdown_start_ns: int | None
    max_drawdown_trough_ns: int | None
    max_drawdown_end_ns: int | None  # None when not recovered by the end
    exposure: float | None  # share of bars with non-zero gross exposure
    turnover: float | None  # traded notional / mean equity over the whole curve
    annual_turnover: float | None  # turnover × periods per year / n bars
    psr: float | None  # probabilistic Sharpe vs 0, per-bar returns
    n_periods_per_year: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _cagr(ratio: float, years: float) -> float | None:
    if years * NS_PER_YEAR < NS_PER_DAY:
        return None
    try:
        return math.exp(math.log(ratio) / years) - 1.0
    except OverflowError:
        return math.inf


def _exposure(gross_exposure: npt.ArrayLike | None, n: int) -> float | None:
    if gross_exposure is None:
        return None
    g = np.asarray(gross_exposure, dtype=np.float64)
    if g.shape != (n,):
        raise ValueError(f"gross_exposure has shape {g.shape}, the curve has {n} points")
    if not np.all(np.isfinite(g)) or float(np.min(g)) < 0.0:
        raise ValueError("gross_exposure must be finite and >= 0 (sum of |position notional|)")
    return float(np.count_nonzero(g)) / n


def curve_metrics(
    ts: npt.ArrayLike,
    equity: npt.ArrayLike,
    initial: float,
    *,
    gross_exposure: npt.ArrayLike | None = None,
    traded_notional: float | None = None,
) -> CurveMetrics:
    """All curve metrics (see the module docstring for conventions); needs >= 2 points."""
    t, e, ini = check_curve(ts, equity, initial)
    n = len(t)
    if n < 2:
        raise ValueError(f"need at least 2 equity points for curve metrics, got {n}")
    ppy = NS_PER_YEAR / float(np.median(np.diff(t)))
    r = _returns(e, ini)
    mean = float(np.mean(r))
    sd = float(np.std(r, ddof=1))
    downside = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2)))
    info = drawdown_info(t, e, ini)
    years = (int(t[-1]) - int(t[0]) + _step(t)) / NS_PER_YEAR
    cagr = _cagr(float(e[-1]) / ini, years)
    turnover = annual_turnover = None
    if traded_notional is not None:
        tn = float(traded_notional)
        if not math.isfinite(tn) or tn < 0.0:
            raise ValueError(f"traded_notional must be finite and >= 0, got {traded_notional}")
        turnover = tn / float(np.mean(e))
        annual_turnover = turnover * ppy / n
    return CurveMetrics(
        start_ns=int(t[0]),
        end_ns=int(t[-1]),
        n_bars=n,
        initial_equity=ini,
        final_equity=float(e[-1]),
        total_return=float(e[-1]) / ini - 1.0,
        annual_return=mean * ppy,
        cagr=cagr,
        volatility=sd * math.sqrt(ppy),
        sharpe=mean / sd * math.sqrt(ppy) if sd > 0.0 else None,
        sortino=mean / downside * math.sqrt(ppy) if downside > 0.0 else None,
        calmar=cagr / info.max_drawdown if cagr is not None and info.max_drawdown > 0 else None,
        max_drawdown=info.max_drawdown,
        max_drawdown_duration_ns=info.duration_ns,
        max_drawdown_start_ns=info.start_ns,
        max_drawdown_trough_ns=info.trough_ns,
        max_drawdown_end_ns=info.end_ns,
        exposure=_exposure(gross_exposure, n),
        turnover=turnover,
        annual_turnover=annual_turnover,
        psr=_psr(r, sd),
        n_periods_per_year=ppy,
    )


def _psr(r: F64, sd: float) -> float | None:
    if sd == 0.0:
        return None
    try:
        return probabilistic_sharpe(r)
    except ValueError:  # degenerate two-point distribution: no PSR, not a crash
        return None


def _window_sums(x: F64, w: int) -> F64:
    """Sum of each full window x[i-w+1 .. i], i >= w-1, from cumulative sums restarted every
    w points: each sum adds at most w terms, so rounding does not grow with len(x)."""
    n = len(x)
    nb = -(-n // w)
    flat = np.zeros(nb * w)
    flat[:n] = x
    blocks = flat.reshape(nb, w)
    prefix = np.cumsum(blocks, axis=1).ravel()  # from its block's start through i
    suffix = np.cumsum(blocks[:, ::-1], axis=1)[:, ::-1].ravel()  # from i to its block's end
    end = np.arange(w - 1, n)
    start = end - w + 1
    aligned = start % w == 0  # the window is exactly one block
    out: F64 = np.where(aligned, prefix[end], suffix[start] + prefix[end])
    return out


def rolling_sharpe(ts: npt.ArrayLike, equity: npt.ArrayLike, initial: float, window: int) -> F64:
    """Annualised Sharpe of the last `window` per-bar returns at each bar; NaN for the first
    window − 1 bars and wherever the window's returns are all equal (zero stdev).

    Window sums come from block-restarted cumulative sums; where S2 − S1²/w cancels too far to
    trust (relative rounding bound above 1e-8) the window is recomputed exactly by two passes."""
    t, e, ini = check_curve(ts, equity, initial)
    if isinstance(window, bool) or not isinstance(window, int | np.integer) or window < 2:
        raise ValueError(f"window must be an integer >= 2, got {window!r}")
    n, w = len(t), int(window)
    out = np.full(n, np.nan)
    if n < w:
        return out
    ppy = periods_per_year(t)
    r = _returns(e, ini)
    centre = float(np.mean(r))  # shifting by a constant keeps sums of squares small
    x = r - centre
    s1 = _window_sums(x, w)
    s2 = _window_sums(x * x, w)
    mean = s1 / w + centre
    ss = s2 - s1 * s1 / w  # (w - 1) × variance
    # Count value changes (exact integers) so an all-equal window is NaN, not rounding noise.
    changes = np.concatenate(([0], np.cumsum(r[1:] != r[:-1])))
    flat = changes[w - 1 :] - changes[: n - w + 1] == 0
    # A sum of w terms is off by at most (w - 1)·eps·S2: beyond 1e-8 of ss, redo exactly.
    suspect = np.flatnonzero(~flat & (ss <= 1e8 * w * np.finfo(np.float64).eps * s2))
    windows = np.lib.stride_tricks.sliding_window_view(r, w)
    chunk = max(1, 2**22 // w)  # bounds the copy to ~32 MiB
    for a in range(0, len(suspect), chunk):
        idx = suspect[a : a + chunk]
        win = windows[idx]
        m = win.mean(axis=1)
        mean[idx] = m
        ss[idx] = ((win - m[:, None]) ** 2).sum(axis=1)
    sd = np.sqrt(np.maximum(ss, 0.0) / (w - 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        sr = mean / sd * math.sqrt(ppy)
    out[w - 1 :] = np.where(flat | (sd == 0.0), np.nan, sr)
    return out

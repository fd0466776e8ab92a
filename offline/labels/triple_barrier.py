"""Triple-barrier labels (López de Prado, AFML ch. 3) on OHLC bars.

Entry at close[t]. Barrier widths are fractions of the entry price: fixed (`pt`, `sl`, e.g.
0.004 = 0.4%) or, when a volatility series is given, `pt * vol[t]` and `sl * vol[t]` (vol known
at t, e.g. a realized-vol feature column). The first touch is searched on bars t+1..t+h:

- side="long":  profit-take at close[t]*(1+pt) touched when high >= it; stop-loss at
  close[t]*(1-sl) touched when low <= it.
- side="short": mirrored; profit-take at close[t]*(1-pt) (low <=), stop at close[t]*(1+sl)
  (high >=).

Touching is inclusive (a high exactly at the barrier counts). One bar touching BOTH barriers is
counted as a stop-loss: OHLC cannot tell which came first, so assume the worse (conservative).

Outputs per t (see forward.py for the missing-value convention):
- label: +1 = profit-take first, -1 = stop-loss first, 0 = time barrier (no touch by t+h). For
  the long side +1 is "upper first" (LONG) and -1 "lower first" (SHORT); for the short side the
  label is about the short position (+1 = price fell to its profit-take first).
- binary: mode "pt": 1 if the profit-take was touched first else 0 (time barrier -> 0);
  mode "sign": 1 if the realised return `ret` > 0 else 0 (a time-barrier exit with a positive
  return -> 1).
- t1: exit bar index (the touching bar, or t+h on the time barrier). The label depends on bars
  t..t1 only, so t1 is also the label's end for purging.
- ret: the position's simple return at exit, taken at the barrier level when touched (+pt or
  -sl of the width in force, ignoring gaps through the barrier) and at close[t+h] otherwise
  (close[t+h]/close[t]-1 for long, its negative for short).

Missing: t+h past the last bar (even if a barrier is touched earlier, so the tail is not biased
towards touched labels), non-finite close[t], a non-finite or non-positive vol[t], and a time-
barrier exit with a non-finite close[t+h].

Vectorised over t, looping over the offsets 1..h on the still-open samples only: O(n*h) worst
case, ~1-2 s for 2.1M bars and h=60.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from offline.labels.forward import check_horizon
from offline.labels.threshold import check_fraction

LONG = 1
SHORT = -1
NEUTRAL = 0

Side = Literal["long", "short"]
BinaryMode = Literal["pt", "sign"]


@dataclass(frozen=True, eq=False)
class TripleBarrierResult:
    """Per-bar outputs; float arrays NaN where missing, t1 -1 where missing."""

    label: np.ndarray  # float64 in {+1, -1, 0}
    binary: np.ndarray  # float64 in {1, 0}
    t1: np.ndarray  # int64 exit index
    ret: np.ndarray  # float64 simple return of the position at exit


def triple_barrier(
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    *,
    pt: float,
    sl: float,
    h: int,
    vol: np.ndarray | None = None,
    side: Side = "long",
    binary: BinaryMode = "pt",
) -> TripleBarrierResult:
    """Triple-barrier labels for every bar; see the module docstring for the conventions."""
    pt = check_fraction("pt", pt)
    sl = check_fraction("sl", sl)
    h = check_horizon(h)
    if side not in ("long", "short"):
        raise ValueError(f"side must be 'long' or 'short', got {side!r}")
    if binary not in ("pt", "sign"):
        raise ValueError(f"binary mode must be 'pt' or 'sign', got {binary!r}")
    hi = np.asarray(high, dtype=np.float64)
    lo = np.asarray(low, dtype=np.float64)
    c = np.asarray(close, dtype=np.float64)
    n = c.shape[0]
    if hi.shape != (n,) or lo.shape != (n,):
        raise ValueError("high, low and close must be 1-d arrays of one length")

    label = np.full(n, np.nan)
    ret = np.full(n, np.nan)
    t1 = np.full(n, -1, dtype=np.int64)
    m = max(n - h, 0)  # only t with a complete horizon (t+h <= n-1) get a label
    entry = c[:m]
    if vol is None:
        ptw = np.full(m, pt)
        slw = np.full(m, sl)
    else:
        v = np.asarray(vol, dtype=np.float64)
        if v.shape != (n,):
            raise ValueError(f"vol must have one value per bar ({n}), got shape {v.shape}")
        with np.errstate(invalid="ignore"):
            ptw = pt * v[:m]
            slw = sl * v[:m]
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(entry) & (ptw > 0) & (slw > 0)
    if side == "long":
        upper, lower = entry * (1.0 + ptw), entry * (1.0 - slw)
    else:
        upper, lower = entry * (1.0 + slw), entry * (1.0 - ptw)

    live = np.flatnonzero(ok)  # samples still open, shrinking as barriers are touched
    up_l, lo_l = upper[live], lower[live]
    for k in range(1, h + 1):
        if live.size == 0:
            break
        j = live + k
        hit_up = hi[j] >= up_l
        hit_dn = lo[j] <= lo_l
        stop, take = (hit_dn, hit_up) if side == "long" else (hit_up, hit_dn)
        take &= ~stop  # both on one bar: stop-loss first
        if stop.any():
            s = live[stop]
            label[s], ret[s], t1[s] = SHORT, -slw[s], s + k
        if take.any():
            s = live[take]
            label[s], ret[s], t1[s] = LONG, ptw[s], s + k
        keep = ~(stop | take)
        live, up_l, lo_l = live[keep], up_l[keep], lo_l[keep]
    # Time barrier at t+h for the rest.
    if live.size:
        r = c[live + h] / entry[live] - 1.0
        if side == "short":
            r = -r
        fin = np.isfinite(r)
        s = live[fin]
        label[s], ret[s], t1[s] = NEUTRAL, r[fin], s + h

    bin_ = ((label == LONG) if binary == "pt" else (ret > 0)).astype(np.float64)
    bin_[np.isnan(label)] = np.nan
    return TripleBarrierResult(label=label, binary=bin_, t1=t1, ret=ret)

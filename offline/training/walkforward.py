"""Time-based walk-forward windows over a dataset's `ts_event`, and the fit/valid/calib split
inside each training window, purged with `offline.splits.purge`.

Windows (all times int ns, half-open [start, end)):
  t0 = ts of the first usable row (all symbols together);
  test k   = [t0 + train + k*step, t0 + train + k*step + test), kept while it ends by the data's
             end (the last usable ts + 1 ns): a partial last window is not a fold;
  train k  = [test_start - train, test_start), then purged against the test block: a training
             row whose label window [ts, end_ts] reaches into the test window is dropped.

Purging is global by time across symbols (rows of all symbols stacked, sorted by ts), not per
symbol: the conservative choice, since bars of correlated symbols at the same time share
information. The embargo is passed to `purge` exactly as offline/splits.py defines it (rows that
start within `embargo` after the test window); walk-forward training rows all precede the test
block, so it can never remove a row here -- it is kept for the same meaning as in purged k-fold.

Inside a training window, by time (never from the test window): fit = the first 70% of the
window's duration, validation (early stopping) the next 15%, calibration the last 15%; each
earlier slice is purged against every later one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from offline.splits import purge

NS = {"m": 60 * 10**9, "h": 3600 * 10**9, "d": 86400 * 10**9}
DURATION_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([mhd])\s*")
WF_KEYS = ("train", "test", "step")
FIT_FRACTION, VALID_FRACTION = 0.70, 0.15  # calibration: the rest (0.15)


def parse_duration(text: str, what: str = "duration") -> int:
    """ "90m", "1h", "1.5d" -> ns; "0" -> 0. Units: m (minutes), h (hours), d (days)."""
    if text.strip() == "0":
        return 0
    m = DURATION_RE.fullmatch(text)
    if m is None:
        raise ValueError(
            f"{what} {text!r}: want a number and a unit m|h|d, e.g. 30m, 1h, 180d (or 0)"
        )
    return round(float(m.group(1)) * NS[m.group(2)])


@dataclass(frozen=True)
class WalkForward:
    train_ns: int
    test_ns: int
    step_ns: int
    text: str = ""


def parse_walk_forward(text: str) -> WalkForward:
    """ "train=180d,test=30d,step=30d" (step defaults to test)."""
    hint = "want train=<dur>,test=<dur>[,step=<dur>], e.g. train=180d,test=30d,step=30d"
    got: dict[str, int] = {}
    for item in text.split(","):
        key, eq, val = (s.strip() for s in item.partition("="))
        if not eq or not key or not val:
            raise ValueError(f"walk-forward {text!r}: bad item {item.strip()!r}; {hint}")
        if key not in WF_KEYS:
            raise ValueError(f"walk-forward {text!r}: unknown key {key!r}; {hint}")
        if key in got:
            raise ValueError(f"walk-forward {text!r}: {key} given twice")
        got[key] = parse_duration(val, f"walk-forward {key}")
    for key in ("train", "test"):
        if key not in got:
            raise ValueError(f"walk-forward {text!r}: {key}= is missing; {hint}")
    got.setdefault("step", got["test"])
    for key in WF_KEYS:
        if got[key] <= 0:
            raise ValueError(f"walk-forward {text!r}: {key} must be > 0")
    return WalkForward(got["train"], got["test"], got["step"], text)


@dataclass(frozen=True)
class Window:
    fold: int
    train_start: int
    test_start: int
    test_end: int  # exclusive


def windows(t0: int, t_end: int, wf: WalkForward) -> list[Window]:
    """The folds whose test window fits in [t0, t_end) (t_end exclusive)."""
    out: list[Window] = []
    k = 0
    while True:
        start = t0 + wf.train_ns + k * wf.step_ns
        if start + wf.test_ns > t_end:
            return out
        out.append(Window(k, start - wf.train_ns, start, start + wf.test_ns))
        k += 1


def in_range(ts: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Indices of the sorted `ts` in [lo, hi)."""
    a, b = np.searchsorted(ts, lo, "left"), np.searchsorted(ts, hi, "left")
    return np.arange(a, b, dtype=np.int64)


@dataclass(frozen=True)
class FoldRows:
    train: np.ndarray  # purged against test (all of fit + valid + calib before their own purge)
    test: np.ndarray


def fold_rows(ts: np.ndarray, end_ts: np.ndarray, w: Window, embargo_ns: int) -> FoldRows:
    test = in_range(ts, w.test_start, w.test_end)
    cand = in_range(ts, w.train_start, w.test_start)
    train = purge(ts, end_ts, cand, test, embargo_ns) if test.size else cand
    return FoldRows(train, test)


@dataclass(frozen=True)
class InnerSplit:
    fit: np.ndarray
    valid: np.ndarray
    calib: np.ndarray
    bounds: tuple[int, int, int, int]  # window start, valid start, calib start, window end


def inner_split(
    ts: np.ndarray, end_ts: np.ndarray, rows: np.ndarray, start: int, end: int, embargo_ns: int
) -> InnerSplit:
    """Split `rows` (sorted indices, ts in [start, end)) by time into fit/valid/calib and purge
    each earlier slice against each later one."""
    span = end - start
    v0 = start + int(span * FIT_FRACTION)
    c0 = start + int(span * (FIT_FRACTION + VALID_FRACTION))
    t = ts[rows]
    fit = rows[t < v0]
    valid = rows[(t >= v0) & (t < c0)]
    calib = rows[t >= c0]
    if calib.size:
        fit = purge(ts, end_ts, fit, calib, embargo_ns)
        valid = purge(ts, end_ts, valid, calib, embargo_ns)
    if valid.size:
        fit = purge(ts, end_ts, fit, valid, embargo_ns)
    return InnerSplit(fit, valid, calib, (start, v0, c0, end))

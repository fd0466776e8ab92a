"""The batch path shared by families that keep a window of closes as exact fixed-point ints
(`_window`, units of 1/SCALE) and sums of it: the SMA ratio and the WMA.

`close_run` is their `update_many`: a long run takes the family's numpy path
(`_update_array`), whose prelude is `int64_run`; a short one, or one the numpy path refuses, runs
`update`'s integer arithmetic in locals (`_update_ints`). Either gives `update`'s values and
state (tests/operators/test_op_feature_batch.py).
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

import numpy as np

from operators.features.base import BarColumns
from operators.fixedpoint import SCALE
from schemas.messages import Bar

MIN_RUN = 32  # full-window bars: shorter runs lose to numpy's fixed cost
EXACT = 2.0**53  # ints up to this are exact doubles


class IntCloseWindow(Protocol):
    _window: deque[int]

    def update(self, bar: Bar) -> float: ...

    def _update_ints(self, fresh: list[int]) -> list[float]: ...

    def _update_array(self, closes: list[float], fill: int) -> list[float] | None: ...


def close_run(feat: IntCloseWindow, cols: BarColumns, span: int) -> list[float]:
    """`update_many` of a family whose window holds `span` closes."""
    closes = cols.field("close")
    fill = span - len(feat._window)  # bars until the window is full
    if len(closes) - fill >= MIN_RUN:
        out = feat._update_array(closes, fill)
        if out is not None:
            return out
    try:
        fresh = [round(c * SCALE) for c in closes]
    except (ValueError, OverflowError):  # not finite: raise where update would
        return [feat.update(b) for b in cols.bars]
    return feat._update_ints(fresh)


def int64_run(
    feat: IntCloseWindow, closes: list[float], fill: int, terms: int
) -> tuple[list[float], np.ndarray, np.ndarray, float] | None:
    """The numpy path's prelude: closes rounded as `update` rounds them; the first `fill` through
    `_update_ints` (the window fills); then `ext`, the full window and the rest as int64, with
    its cumulative sums `csum` (csum[0] = 0). Returns (head values, ext, csum, peak: a bound of
    every |value| + 1), or None, the state untouched, where a close is not finite or `peak *
    terms` (the caller's bound of its largest sum or product) could leave int64."""
    scaled = np.asarray(closes, dtype=np.float64) * SCALE  # the products update rounds
    if not np.isfinite(scaled).all():
        return None
    peak = max(float(np.abs(scaled).max()), float(max(map(abs, feat._window), default=0)))
    peak += 1.0
    if peak * terms >= 2.0**62:
        return None
    fresh = np.rint(scaled).astype(np.int64)  # half-even, as round() is
    head = feat._update_ints(fresh[:fill].tolist()) if fill > 0 else []
    ext = np.concatenate([np.array(feat._window, dtype=np.int64), fresh[fill:]])
    csum = np.zeros(len(ext) + 1, dtype=np.int64)
    np.cumsum(ext, out=csum[1:])
    return head, ext, csum, peak

"""Effective warm-up: how many bars a feature needs before its value stops depending on where the
replay started.

The feature runs once from bar 0 and, fresh, from several later starts s (fed bars[s:]). For each
column, k is the smallest offset such that for EVERY start the values at s+k, s+k+1, ... (to the
end of the data) agree with the run from 0 within RTOL (relative, floored by the column's median
magnitude as in tests/operators/featurecheck.py, since pure relative error is ill-posed where a
value crosses zero); `exact` is the same with bit-for-bit equality. Windowed features settle after
exactly their window (k == declared warm-up); recursive ones (EMA, RSI, MACD, ADX, EWMA vol,
GARCH) converge later; cumulative ones (OBV) never do: k is None ("never") and `worst_rel` says by
how much they differ. A researcher must drop `effective` bars at the start of every replay.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from offline.lookahead import Target, align_refs, load_target, same_bits
from schemas.messages import Bar

RTOL = 1e-9


@dataclass(frozen=True)
class ColumnWarmup:
    column: str
    declared: int | None  # the feature's `warmup` (first finite bar); None for batch features
    effective: int | None  # bars to drop for agreement within RTOL; None: never within the data
    exact: int | None  # bars to drop for bit-identical values; None: never
    worst_rel: float  # largest relative difference seen where both runs are finite
    horizon: int  # bars compared after the latest start

    @property
    def longer(self) -> bool:
        """Effective warm-up longer than declared (expected for recursive/cumulative features)."""
        if self.effective is None:
            return True
        return self.declared is not None and self.effective > self.declared


@dataclass(frozen=True)
class WarmupReport:
    label: str
    bars: int
    starts: list[int]
    columns: list[ColumnWarmup]

    def column(self, name: str) -> ColumnWarmup:
        return next(c for c in self.columns if c.column == name)


def start_points(n: int, starts: int, horizon: int) -> list[int]:
    """`starts` starts evenly spread over (0, n - horizon]."""
    span = n - horizon
    if span < 1 or starts < 1:
        raise ValueError(f"warm-up check: {n} bars leave no room for starts before the horizon")
    return sorted({max(1, round((i + 1) * span / starts)) for i in range(starts)})


def _settle(ok: np.ndarray) -> int | None:
    """Smallest k with ok[k:] all true; None if the last value still disagrees."""
    bad = np.flatnonzero(~ok)
    if bad.size == 0:
        return 0
    k = int(bad[-1]) + 1
    return None if k == ok.size else k


def check_warmup(
    feature: Any,
    bars: Sequence[Bar],
    refs: Mapping[str, Sequence[Bar]] | None = None,
    starts: int = 4,
    horizon: int | None = None,
    rtol: float = RTOL,
    kwargs: Mapping[str, Any] | None = None,
) -> WarmupReport:
    """Per column effective warm-up over `starts` restarts, each compared to the end of the data
    (at least `horizon` bars; default half the data)."""
    target: Target = load_target(feature, kwargs)
    rows = align_refs(bars, refs)
    n = len(bars)
    h = n // 2 if horizon is None else horizon
    pts = start_points(n, starts, h)
    full = target.run(bars, rows)
    ncol = len(target.columns)
    fin = np.isfinite(full)
    floor = np.array(
        [np.median(np.abs(full[fin[:, j], j])) if fin[:, j].any() else 0.0 for j in range(ncol)]
    )
    eff: list[int | None] = [0] * ncol
    exact: list[int | None] = [0] * ncol
    worst = np.zeros(ncol)
    for s in pts:
        part = target.run(bars[s:], rows[s:])
        ref = full[s:]
        bits = same_bits(part, ref)
        both = np.isfinite(part) & np.isfinite(ref)
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = np.maximum(np.maximum(np.abs(part), np.abs(ref)), floor)
            rel = np.where(both, np.abs(part - ref) / np.where(scale > 0, scale, 1.0), 0.0)
        close = bits | (both & (rel <= rtol))
        worst = np.maximum(worst, rel.max(axis=0))
        for j in range(ncol):
            for acc, ok in ((eff, close[:, j]), (exact, bits[:, j])):
                k, prev = _settle(ok), acc[j]
                acc[j] = None if k is None or prev is None else max(prev, k)
    cols = [
        ColumnWarmup(c, target.declared[j], eff[j], exact[j], float(worst[j]), n - pts[-1])
        for j, c in enumerate(target.columns)
    ]
    return WarmupReport(target.label, n, pts, cols)


def print_warmup(rep: WarmupReport, console: Any) -> None:
    from rich.table import Table

    tab = Table(
        title=f"warm-up: {rep.label}, restarts at {rep.starts} of {rep.bars:,} bars "
        f"(agree within rel {RTOL:g} / bit-exact)"
    )
    for h in ("column", "declared", "effective", "bit-exact", "worst rel diff", "note"):
        left = h in ("column", "note")
        tab.add_column(h, justify="left" if left else "right", overflow="fold")

    def fmt(k: int | None) -> str:
        return "[red]never[/]" if k is None else str(k)

    for c in rep.columns:
        if c.effective is None:
            note = f"[red]never[/] within {c.horizon:,} bars"
        elif c.longer:
            note = "longer than declared"
        else:
            note = ""
        decl = "?" if c.declared is None else str(c.declared)
        tab.add_row(c.column, decl, fmt(c.effective), fmt(c.exact), f"{c.worst_rel:.3g}", note)
    console.print(tab)

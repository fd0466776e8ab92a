"""The feature contract, shared by every family file.

A feature is a small picklable state object, updated with one closed bar at a time:

    family: str                     class attribute, e.g. "macd"
    name: str                       canonical spec, `<family>_<params>`, e.g. "macd_12_26_9"
    columns: tuple[str, ...]        output columns; (name,) for one output, else name + "_<part>"
    warmup: int                     index of the first bar with a finite value (TA-Lib lookback)
    update(bar) -> float            one output (NaN while warming up)
    update(bar) -> tuple[float,...] several outputs, in `columns` order

Optionally, a family may also take a whole run of one symbol's bars at once (a replay's batch):
    update_many(cols: BarColumns) -> list   the outputs `update` would return bar by bar, and
                                            the same state after (tests/operators/featurecheck.py
                                            holds every family that has it to that)

Pair (cross-asset) features also have `ref: str` (the reference symbol) and take the reference
symbol's bar at the same open time, or None when it has none: `update(bar, ref_bar)`.

Features never read the wall clock, never look at bars other than the ones given, and keep all
state on the instance (two instances never share anything), so the value at bar t can only depend
on bars <= t; the look-ahead guard (offline/lookahead.py, `cryptoflow offline
lookahead-check`) checks this empirically.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Protocol, runtime_checkable

from schemas.messages import Bar

NAN = float("nan")
FIELDS = ("open", "high", "low", "close", "volume")  # bar fields a feature may read by name
# Bars: a shorter run takes the per-bar path in `FeatureSet.update_batch`, the SMA and the SMA
# cross (the same values; numpy's per-call cost would lose, ADR 0016).
BATCH_MIN = 128


def fmt_param(p: object) -> str:
    """Parameter as it appears in a column name: 14 -> "14", 0.05 -> "0p05", 2.0 -> "2"."""
    if isinstance(p, bool):
        raise TypeError("boolean feature parameters are not supported")
    if isinstance(p, float):
        return (str(int(p)) if p.is_integer() else repr(p)).replace(".", "p").replace("-", "m")
    if isinstance(p, int):
        return str(p) if p >= 0 else f"m{-p}"
    return str(p).lower()


def spec_name(family: str, *params: object) -> str:
    """`<family>_<params>`: spec_name("macd", 12, 26, 9) == "macd_12_26_9"."""
    return "_".join([family, *(fmt_param(p) for p in params)])


@runtime_checkable
class Feature(Protocol):
    family: ClassVar[str]
    name: str
    columns: tuple[str, ...]
    warmup: int

    def update(self, bar: Bar) -> float | tuple[float, ...]: ...


@runtime_checkable
class PairFeature(Protocol):
    family: ClassVar[str]
    name: str
    columns: tuple[str, ...]
    warmup: int
    ref: str

    def update(self, bar: Bar, ref_bar: Bar | None) -> float | tuple[float, ...]: ...


class BarColumns:
    """A run of bars of one symbol, with each field as a list made once for every feature that
    reads it."""

    def __init__(self, bars: Sequence[Bar]) -> None:
        self.bars = bars
        self._cols: dict[str, list[float]] = {}

    def __len__(self) -> int:
        return len(self.bars)

    def field(self, name: str) -> list[float]:
        col = self._cols.get(name)
        if col is None:
            col = self._cols[name] = [getattr(b, name) for b in self.bars]
        return col

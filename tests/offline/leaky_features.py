"""User-defined features for the look-ahead guard's tests: deliberately leaky ones the guard must
flag, and honest ones it must pass (batch functions take the bar frame of offline/lookahead.py)."""

from __future__ import annotations

import math
from typing import ClassVar

import polars as pl

from schemas.messages import Bar

NAN = float("nan")


# --- batch, leaky ---


def centred_mean(df: pl.DataFrame) -> pl.Series:
    """A centred moving average: uses the 2 bars after t."""
    return df["close"].rolling_mean(5, center=True).alias("centred_mean")


def full_norm(df: pl.DataFrame) -> pl.Series:
    """Close over the mean close of the WHOLE frame, future bars included."""
    return (df["close"] / df["close"].mean()).alias("full_norm")


def next_return(df: pl.DataFrame) -> pl.DataFrame:
    """Two columns: an honest trailing return and the next bar's return (a label, not a feature)."""
    c = df["close"]
    return pl.DataFrame({"ret": (c / c.shift(1)).log(), "next_ret": (c.shift(-1) / c).log()})


# --- batch, honest ---


def trailing_mean(df: pl.DataFrame, n: int = 10) -> pl.Series:
    return df["close"].rolling_mean(n).alias(f"trailing_mean_{n}")


def ref_spread(df: pl.DataFrame) -> pl.Series:
    """log(close / BTC close): a batch pair feature on the reference columns."""
    return (df["close"] / df["btcusdt_close"]).log().alias("ref_spread")


# --- streaming, leaky ---


class SharedMean:
    """Close over the mean of every close seen by ANY instance (class-level list)."""

    family: ClassVar[str] = "shared_mean"
    _seen: ClassVar[list[float]] = []

    def __init__(self) -> None:
        self.name = "shared_mean"
        self.columns = (self.name,)
        self.warmup = 0

    def update(self, bar: Bar) -> float:
        self._seen.append(bar.close)
        return bar.close / (sum(self._seen) / len(self._seen))


class SharedWindow:
    """Mean of the last n closes of a class-level list: right for one instance alone, wrong as
    soon as two instances interleave (only the shared-state check can see it)."""

    family: ClassVar[str] = "shared_window"
    _seen: ClassVar[list[float]] = []

    def __init__(self, n: int = 5) -> None:
        self.n = n
        self.name = f"shared_window_{n}"
        self.columns = (self.name,)
        self.warmup = n - 1
        self._count = 0

    def update(self, bar: Bar) -> float:
        self._seen.append(bar.close)
        self._count += 1
        if self._count < self.n:
            return NAN
        return sum(self._seen[-self.n :]) / self.n


class FutureCache:
    """Memoises each bar's next close in a module-wide cache keyed by open time: the first run
    cannot know it, later runs read what an earlier run stored."""

    family: ClassVar[str] = "future_cache"
    _next_close: ClassVar[dict[int, float]] = {}

    def __init__(self) -> None:
        self.name = "future_cache"
        self.columns = (self.name,)
        self.warmup = 0
        self._prev_ts: int | None = None

    def update(self, bar: Bar) -> float:
        if self._prev_ts is not None:
            self._next_close[self._prev_ts] = bar.close
        self._prev_ts = bar.ts_event
        nxt = self._next_close.get(bar.ts_event)
        return NAN if nxt is None else math.log(nxt / bar.close)


# --- streaming, honest ---


class RangeMean:
    """Mean (high - low) / close over the last n bars, plus the bar's own value: two columns."""

    family: ClassVar[str] = "range_mean"

    def __init__(self, n: int = 10) -> None:
        if n < 1:
            raise ValueError("n must be >= 1")
        self.n = n
        self.name = f"range_mean_{n}"
        self.columns = (f"{self.name}_mean", f"{self.name}_last")
        self.warmup = n - 1
        self._window: list[float] = []

    def update(self, bar: Bar) -> tuple[float, float]:
        r = (bar.high - bar.low) / bar.close
        w = self._window
        w.append(r)
        if len(w) > self.n:
            del w[0]
        return (sum(w) / self.n if len(w) == self.n else NAN, r)


class RefRatio:
    """A pair feature: close / reference close, NaN without an aligned reference bar."""

    family: ClassVar[str] = "ref_ratio"

    def __init__(self, ref: str = "BTCUSDT") -> None:
        self.ref = ref
        self.name = f"ref_ratio_{ref.lower()}"
        self.columns = (self.name,)
        self.warmup = 0

    def update(self, bar: Bar, ref_bar: Bar | None) -> float:
        if ref_bar is None or ref_bar.ts_event != bar.ts_event:
            return NAN
        return bar.close / ref_bar.close

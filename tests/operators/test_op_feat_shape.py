"""Candle shape, high-low range, time of day and day of week stream over the real Jan-2024 1m bars
and equal numpy/polars references written here at every bar."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np
import polars as pl
import pytest

from operators.features.candle import Candle
from operators.features.day_of_week import DayOfWeek
from operators.features.hl_range import HLRange
from operators.features.time_of_day import TimeOfDay
from schemas.messages import NS_PER_MINUTE, Bar
from tests.operators.featurecheck import (
    assert_matches,
    assert_pickle_resumes,
    assert_prefix_stable,
    stream,
)
from tests.operators.opdata import SYMBOLS, real_arrays, real_bars


def ref_candle(a: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    o, h, lo, c = a["open"], a["high"], a["low"], a["close"]
    rng = h - lo
    flat = rng == 0
    safe = np.where(flat, 1.0, rng)
    top = np.maximum(o, c)
    bottom = np.minimum(o, c)
    return {
        "candle_body": np.where(flat, 0.0, (c - o) / safe),
        "candle_upper_wick": np.where(flat, 0.0, (h - top) / safe),
        "candle_lower_wick": np.where(flat, 0.0, (bottom - lo) / safe),
    }


def _datetimes(ts: np.ndarray) -> pl.Series:
    return pl.Series("t", ts).cast(pl.Datetime("ns", time_zone="UTC"))


def ref_time_of_day(a: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    t = _datetimes(a["ts"])
    secs = (
        t.dt.hour().cast(pl.Float64) * 3600
        + t.dt.minute().cast(pl.Float64) * 60
        + t.dt.second().cast(pl.Float64)
        + t.dt.nanosecond().cast(pl.Float64) / 1e9
    ).to_numpy()
    angle = 2 * np.pi * secs / 86400
    return {"time_of_day_sin": np.sin(angle), "time_of_day_cos": np.cos(angle)}


def ref_day_of_week(a: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    dow = (_datetimes(a["ts"]).dt.weekday() - 1).to_numpy()  # polars: ISO Monday=1
    angle = 2 * np.pi * dow / 7
    return {"day_of_week_sin": np.sin(angle), "day_of_week_cos": np.cos(angle)}


CASES: dict[str, tuple[Callable[[], Any], Callable[[dict[str, np.ndarray]], dict[str, Any]]]] = {
    "candle": (Candle, ref_candle),
    "hl_range": (HLRange, lambda a: {"hl_range": (a["high"] - a["low"]) / a["close"]}),
    "time_of_day": (TimeOfDay, ref_time_of_day),
    "day_of_week": (DayOfWeek, ref_day_of_week),
}


@cache
def _full(key: str, symbol: str) -> np.ndarray:
    make, ref = CASES[key]
    return assert_matches(make, real_bars(symbol), ref(real_arrays(symbol)))


@pytest.mark.parametrize("symbol", SYMBOLS)
@pytest.mark.parametrize("key", list(CASES))
def test_equals_reference_at_every_bar(key: str, symbol: str) -> None:
    feat = CASES[key][0]()
    assert feat.name == feat.family == key and feat.warmup == 0
    got = _full(key, symbol)
    assert np.isfinite(got).all()


@pytest.mark.parametrize("key", list(CASES))
def test_prefix_stable_and_pickle_resumes(key: str) -> None:
    make = CASES[key][0]
    bars = real_bars("BTCUSDT")[:3_000]
    full = _full(key, "BTCUSDT")[:3_000]
    assert_prefix_stable(make, bars, full, [1, 2, 1_439, 1_440, 1_441, 2_999])
    assert_pickle_resumes(make, bars, [1, 700, 2_000])


def test_columns() -> None:
    assert Candle().columns == ("candle_body", "candle_upper_wick", "candle_lower_wick")
    assert HLRange().columns == ("hl_range",)
    assert TimeOfDay().columns == ("time_of_day_sin", "time_of_day_cos")
    assert DayOfWeek().columns == ("day_of_week_sin", "day_of_week_cos")


def test_candle_parts_add_up_and_flat_bar_is_zero() -> None:
    got = _full("candle", "ETHUSDT")
    np.testing.assert_allclose(np.abs(got[:, 0]) + got[:, 1] + got[:, 2], 1.0, rtol=0, atol=1e-12)
    assert (got[:, 1:] >= 0).all()
    ts = real_bars("ETHUSDT")[0].ts_event
    flat = Bar(
        symbol="X", ts_event=ts, ts_init=ts, open=5.0, high=5.0, low=5.0, close=5.0, volume=1
    )
    assert Candle().update(flat) == (0.0, 0.0, 0.0)


def _at(ts: int) -> Bar:
    return Bar(symbol="X", ts_event=ts, ts_init=ts, open=1, high=1, low=1, close=1, volume=1)


def test_calendar_known_instants() -> None:
    # 2024-01-01 was a Monday; 06:00 UTC is a quarter of the day
    monday_6am = 1_704_088_800 * 10**9
    s, c = TimeOfDay().update(_at(monday_6am))
    assert s == pytest.approx(1.0) and c == pytest.approx(0.0, abs=1e-15)
    assert DayOfWeek().update(_at(monday_6am)) == (0.0, 1.0)
    sunday_noon = monday_6am - 18 * 3600 * 10**9
    s, c = TimeOfDay().update(_at(sunday_noon))
    assert s == pytest.approx(0.0, abs=1e-15) and c == -1.0
    ref = ref_day_of_week({"ts": np.array([sunday_noon])})
    assert DayOfWeek().update(_at(sunday_noon)) == (
        ref["day_of_week_sin"][0],
        ref["day_of_week_cos"][0],
    )
    # before the epoch too (floor division and a non-negative modulo)
    early = -NS_PER_MINUTE * 90  # 1969-12-31 22:30 UTC, a Wednesday
    a = {"ts": np.array([early])}
    np.testing.assert_allclose(
        stream(TimeOfDay, [_at(early)])[0],
        [ref_time_of_day(a)[k][0] for k in ("time_of_day_sin", "time_of_day_cos")],
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        stream(DayOfWeek, [_at(early)])[0],
        [ref_day_of_week(a)[k][0] for k in ("day_of_week_sin", "day_of_week_cos")],
        rtol=1e-12,
    )


def test_hl_range_zero_close_is_nan() -> None:
    ts = 0
    bar = Bar(symbol="X", ts_event=ts, ts_init=ts, open=1, high=2, low=0, close=0.0, volume=1)
    assert np.isnan(HLRange().update(bar))

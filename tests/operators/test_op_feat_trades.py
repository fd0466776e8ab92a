"""Trade-flow features (taker imbalance, trade count, mean trade size) on bars built by BarBuilder
from the real shipped Binance trades equal a polars reference computed straight from the raw
trades file, grouped by minute; on kline bars (n_trades == 0) they are NaN."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import msgspec
import numpy as np
import polars as pl
import pytest

from operators.bars import BarBuilder
from operators.features.trade_count import TradeCount
from operators.features.trade_imbalance import TradeImbalance
from operators.features.trade_size import MeanTradeSize
from schemas.messages import NS_PER_MINUTE, NS_PER_SECOND, Bar
from tests.operators.featurecheck import (
    assert_matches,
    assert_pickle_resumes,
    assert_prefix_stable,
    stream,
)
from tests.operators.opdata import SYMBOLS, real_bars, real_trades
from tests.paths import TRADES

GRACE = 2 * NS_PER_SECOND

MAKERS: dict[str, Callable[[], Any]] = {
    "trade_imbalance": TradeImbalance,
    "trade_count": TradeCount,
    "trade_size": MeanTradeSize,
}


@cache
def tick_bars(symbol: str) -> tuple[Bar, ...]:
    bb = BarBuilder(symbol, NS_PER_MINUTE, GRACE)
    bars: list[Bar] = []
    trades = real_trades(symbol)
    for i in range(0, len(trades), 500):
        out, rejects = bb.update(trades[i : i + 500])
        assert rejects == []
        bars += out
    bars += bb.flush()
    return tuple(bars)


@cache
def reference(symbol: str) -> pl.DataFrame:
    """Per-minute trade flow from the raw file: quantities summed as exact 1e-8 integers."""
    return (
        pl.read_parquet(TRADES)
        .filter(pl.col("symbol") == symbol)
        .with_columns(
            pl.col("trade_time").dt.truncate("1m").dt.epoch("ns").alias("minute"),
            (pl.col("qty") * 1e8).round().cast(pl.Int64).alias("q"),
        )
        .group_by("minute")
        .agg(
            pl.len().alias("n"),
            pl.col("q").sum().alias("vol"),
            pl.col("q").filter(~pl.col("is_buyer_maker")).sum().alias("buy"),
        )
        .sort("minute")
    )


def _refs(symbol: str) -> dict[str, np.ndarray]:
    df = reference(symbol)
    n = df["n"].to_numpy().astype(np.float64)
    vol = df["vol"].to_numpy()
    buy = df["buy"].to_numpy()
    sell = vol - buy
    return {
        "trade_imbalance": (buy - sell) / vol,
        "trade_count": n,
        "trade_size": vol / 1e8 / n,
    }


def test_tick_bars_cover_the_reference_minutes() -> None:
    for symbol in SYMBOLS:
        bars = tick_bars(symbol)
        assert [b.ts_event for b in bars] == reference(symbol)["minute"].to_list()
        assert all(b.n_trades > 0 for b in bars)
        assert len(bars) >= 10  # a few capture windows of real ticks


@pytest.mark.parametrize("symbol", SYMBOLS)
@pytest.mark.parametrize("key", list(MAKERS))
def test_equals_reference_on_tick_bars(key: str, symbol: str) -> None:
    make = MAKERS[key]
    feat = make()
    assert feat.name == feat.family == key and feat.columns == (key,) and feat.warmup == 0
    bars = tick_bars(symbol)
    got = assert_matches(make, bars, {key: _refs(symbol)[key]})
    assert np.isfinite(got).all()
    if key == "trade_imbalance":
        assert (np.abs(got) <= 1).all() and (got > 0).any() and (got < 0).any()
    assert_prefix_stable(make, bars, got, [1, 2, len(bars) // 2, len(bars)])
    assert_pickle_resumes(make, bars, [1, len(bars) // 3])


@pytest.mark.parametrize("key", list(MAKERS))
def test_nan_on_kline_bars(key: str) -> None:
    for symbol in SYMBOLS:
        bars = real_bars(symbol)[:2_000]
        assert all(b.n_trades == 0 for b in bars)
        assert np.isnan(stream(MAKERS[key], bars)).all()


@pytest.mark.parametrize("key", list(MAKERS))
def test_nan_on_zero_volume(key: str) -> None:
    b = tick_bars("BTCUSDT")[0]
    empty = msgspec.structs.replace(b, volume=0.0, n_trades=3, buy_volume=0.0)
    feat = MAKERS[key]()
    assert np.isnan(feat.update(empty)) and np.isnan(feat.value)
    assert np.isfinite(feat.update(b))  # recovers on the next real bar


def test_imbalance_is_exact_on_decimal_volumes() -> None:
    b = tick_bars("ETHUSDT")[0]
    half = msgspec.structs.replace(
        b, open=1.0, high=1.0, low=1.0, close=1.0, volume=0.3, n_trades=2, buy_volume=0.15
    )
    assert TradeImbalance().update(half) == 0.0  # (0.15 - 0.15) / 0.3, not a float residue
    assert MeanTradeSize().update(half) == 0.15
    assert TradeCount().update(half) == 2.0

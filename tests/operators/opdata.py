"""Shared loaders of the real market data in examples/data for the operator tests (cached)."""

from __future__ import annotations

from functools import cache

import numpy as np
import polars as pl

from schemas.messages import NS_PER_MINUTE, Bar, Trade
from tests.operators.featurecheck import arrays
from tests.paths import BARS_2024_01, KLINES, TRADES

SYMBOLS = ("BTCUSDT", "ETHUSDT")


@cache
def real_bars(symbol: str) -> tuple[Bar, ...]:
    """The real Jan-2024 1m bars of one symbol, in open-time order, as wire Bars."""
    df = (
        pl.read_parquet(BARS_2024_01)
        .filter(pl.col("symbol") == symbol)
        .sort("open_time")
        .with_columns(pl.col("open_time").dt.epoch("ns").alias("ts"))
    )
    assert df.height > 40_000, f"expected a month of 1m bars for {symbol}"
    cols = [df[c].to_list() for c in ("ts", "open", "high", "low", "close", "volume")]
    return tuple(
        Bar(
            symbol=symbol,
            ts_event=ts,
            ts_init=ts + NS_PER_MINUTE,
            open=o,
            high=h,
            low=lo,
            close=c,
            volume=v,
        )
        for ts, o, h, lo, c, v in zip(*cols, strict=True)
    )


def closes(symbol: str) -> np.ndarray:
    return np.array([b.close for b in real_bars(symbol)], dtype=np.float64)


@cache
def real_arrays(symbol: str) -> dict[str, np.ndarray]:
    """`featurecheck.arrays` of `real_bars(symbol)`, the input of the numpy/TA-Lib references;
    read-only, as every test module shares the cached arrays."""
    out = arrays(real_bars(symbol))
    for col in out.values():
        col.setflags(write=False)
    return out


@cache
def real_trades(symbol: str) -> tuple[Trade, ...]:
    """Real Binance trade captures of one symbol, in local arrival order (local_ts, trade_id)."""
    df = (
        pl.read_parquet(TRADES)
        .filter(pl.col("symbol") == symbol)
        .with_columns(
            pl.col("trade_time").dt.epoch("ns").alias("ts"),
            pl.col("local_ts").dt.epoch("ns").alias("local"),
        )
        .sort("local", "trade_id")
    )
    return tuple(
        Trade(
            symbol=symbol,
            ts_event=r["ts"],
            ts_init=r["local"],
            trade_id=r["trade_id"],
            price=r["price"],
            size=r["qty"],
            aggressor="sell" if r["is_buyer_maker"] else "buy",
        )
        for r in df.iter_rows(named=True)
    )


@cache
def klines() -> dict[tuple[str, int], tuple[float, float, float, float, float]]:
    """Binance's own 1m klines for the capture minutes: (symbol, open ns) -> OHLCV."""
    k = pl.read_parquet(KLINES).with_columns(pl.col("open_time").dt.epoch("ns").alias("ts"))
    return {
        (r["symbol"], r["ts"]): (r["open"], r["high"], r["low"], r["close"], r["volume"])
        for r in k.iter_rows(named=True)
    }

"""Time columns of market-data files: a datetime, or an integer epoch whose unit each value's
magnitude tells (s, ms, us, ns). Real January 2024 bars and real trades, their times rewritten
in each unit, read to the same int ns as the datetime columns; a glob spanning Binance's 2025
switch from ms to us klines (two files, two units) reads as one series."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from dataflows.datalist import file_inventory
from dataflows.io.files import normalized, scan
from tests.paths import BARS_2024_01, TRADES

UNITS = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def _as_int(df: pl.DataFrame, col: str, unit: str) -> pl.DataFrame:
    exact = pl.col(col).dt.epoch("ns") // (1_000_000_000 // UNITS[unit])
    return df.with_columns(exact.alias(col))


@pytest.mark.parametrize("unit", list(UNITS))
def test_integer_bar_times_in_any_unit_read_as_the_datetimes(unit: str) -> None:
    df = pl.read_parquet(BARS_2024_01)
    ref = normalized(df.lazy(), "bars").collect()
    assert ref["ts_event"][0] == 1_704_067_200 * 10**9  # 2024-01-01 00:00 UTC
    got = normalized(_as_int(df, "open_time", unit).lazy(), "bars").collect()
    assert got.equals(ref)


@pytest.mark.parametrize("unit", ["ms", "us", "ns"])  # trade times carry milliseconds
def test_integer_trade_times_read_as_the_datetimes(unit: str) -> None:
    df = pl.read_parquet(TRADES)
    ref = normalized(df.lazy(), "trades").collect()
    got = normalized(_as_int(df, "trade_time", unit).lazy(), "trades").collect()
    assert got.equals(ref)


def test_a_glob_of_ms_and_us_files_is_one_series(tmp_path: Path) -> None:
    """Binance's spot klines: ms until 2024, us from 2025; a glob over both."""
    df = pl.read_parquet(BARS_2024_01).filter(pl.col("symbol") == "BTCUSDT")
    half = df.height // 2
    _as_int(df.head(half), "open_time", "ms").write_parquet(tmp_path / "k_a.parquet")
    _as_int(df.tail(df.height - half), "open_time", "us").write_parquet(tmp_path / "k_b.parquet")
    got = normalized(scan(tmp_path / "k_*.parquet"), "bars").collect()
    assert got.equals(normalized(df.lazy(), "bars").collect())
    (btc,) = file_inventory(str(tmp_path / "k_*.parquet"))[0]
    assert (btc.count, btc.gaps, btc.duplicates, btc.interval_ns) == (44_640, 0, 0, 60 * 10**9)

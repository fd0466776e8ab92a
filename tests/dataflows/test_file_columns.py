"""Common exports' column names (io/columns.py): real January 2024 bars and real trades written
the way ccxt, freqtrade and trade dumps write them read to exactly the frames of the canonical
files; what cannot be read safely (a symbol the name does not say, several markets in one file,
a side that is neither buy nor sell) is refused with the fix."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from dataflows.io.columns import symbol_from_name
from dataflows.io.files import detect_kind, normalized, scan
from tests.paths import BARS_2024_01, SHARED, TRADES

OHLCV = ["open", "high", "low", "close", "volume"]


def _bars(symbol: str) -> pl.DataFrame:
    return pl.read_parquet(BARS_2024_01).filter(pl.col("symbol") == symbol)


def _read(path: Path) -> pl.DataFrame:
    lf = scan(path)
    return normalized(lf, detect_kind(lf)).collect()


def test_ccxt_ohlcv_csv_reads_as_the_canonical_bars(tmp_path: Path) -> None:
    """fetch_ohlcv's order: ms `timestamp`, capitalised OHLCV, the symbol only in the name."""
    df = _bars("BTCUSDT")
    path = tmp_path / "BTC_USDT-1m.csv"
    df.select(
        pl.col("open_time").dt.epoch("ms").alias("timestamp"),
        *[pl.col(c).alias(c.capitalize()) for c in OHLCV],
    ).write_csv(path)
    got = _read(path)
    assert got.height == df.height and got["symbol"].unique().to_list() == ["BTCUSDT"]
    assert got.equals(normalized(df.lazy(), "bars").collect())


def test_freqtrade_feather_reads_as_the_canonical_bars(tmp_path: Path) -> None:
    df = _bars("ETHUSDT")
    path = tmp_path / "ETH_USDT-1m.feather"
    df.select(pl.col("open_time").alias("date"), *OHLCV).write_ipc(path)
    assert _read(path).equals(normalized(df.lazy(), "bars").collect())


def test_trade_dump_with_side_amount_and_id_reads_as_the_canonical_trades(tmp_path: Path) -> None:
    df = pl.read_parquet(TRADES).filter(pl.col("symbol") == "BTCUSDT")
    path = tmp_path / "btcusdt_trades.csv"
    df.select(
        pl.col("trade_time").dt.epoch("ms").alias("timestamp"),
        pl.col("trade_id").alias("id"),
        "price",
        pl.col("qty").alias("amount"),
        pl.when("is_buyer_maker").then(pl.lit("sell")).otherwise(pl.lit("buy")).alias("side"),
    ).write_csv(path)
    got = _read(path)
    ref = normalized(df.drop("local_ts").lazy(), "trades").collect()
    assert got.height == df.height > 0
    assert got.drop("ts_init").equals(ref.drop("ts_init"))
    assert got["is_buyer_maker"].sum() == df["is_buyer_maker"].sum() > 0


@pytest.mark.skipif(not (SHARED / "small" / "nautilus").exists(), reason="needs ../shared/data")
def test_nautilus_trades_parquet_reads_with_text_booleans_and_the_symbol_from_its_name() -> None:
    path = SHARED / "small" / "nautilus" / "binance_btcusdt-trades.parquet"
    raw = pl.read_parquet(path)
    got = _read(path)
    assert got.height == raw.height == 2001
    assert got["symbol"].unique().to_list() == ["BTCUSDT"]
    assert got["is_buyer_maker"].sum() == (raw["buyer_maker"] == "True").sum()
    assert got["qty"].to_list() == raw.sort("timestamp", "trade_id")["quantity"].to_list()


def test_a_side_that_is_neither_buy_nor_sell_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-trades.csv"
    pl.DataFrame(
        {"timestamp": [1, 2], "id": [1, 2], "price": [1.0, 2.0], "qty": [1.0, 1.0]}
    ).with_columns(side=pl.Series(["buy", "long"])).write_csv(path)
    with pytest.raises(ValueError, match=r"'side' must be 'sell' or 'buy', it holds 'long'"):
        scan(path)


def test_a_file_without_a_symbol_column_or_one_in_its_name_says_how_to_fix_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "export-1m.csv"
    _bars("BTCUSDT").select("open_time", *OHLCV).write_csv(path)
    with pytest.raises(ValueError, match="no symbol column and its name does not say one"):
        scan(path)


def test_a_file_holding_several_markets_is_refused(tmp_path: Path) -> None:
    """QuantConnect's exports: BTCUSD on coinbase and bybit in one file are two instruments."""
    df = _bars("BTCUSDT").head(3).select("symbol", pl.col("open_time").alias("bar_start"), *OHLCV)
    path = tmp_path / "lean.parquet"
    pl.concat([df.with_columns(market=pl.lit(m)) for m in ("coinbase", "bybit")]).write_parquet(
        path
    )
    with pytest.raises(ValueError, match=r"several markets in column 'market' \(bybit, coinbase\)"):
        scan(path)
    one = tmp_path / "lean_one.parquet"
    df.with_columns(market=pl.lit("coinbase")).write_parquet(one)
    assert (
        _read(one)["ts_event"].to_list()
        == normalized(_bars("BTCUSDT").head(3).lazy(), "bars").collect()["ts_event"].to_list()
    )


def test_a_glob_of_files_without_symbol_columns_takes_each_symbol_from_its_name(
    tmp_path: Path,
) -> None:
    for sym in ("BTCUSDT", "ETHUSDT"):
        _bars(sym).select("open_time", *OHLCV).write_parquet(tmp_path / f"{sym}-1m.parquet")
    got = _read(tmp_path / "*-1m.parquet")
    ref = normalized(pl.read_parquet(BARS_2024_01).lazy(), "bars").collect()
    assert got.equals(ref)


def test_canonical_files_are_left_as_they_are() -> None:
    lf = scan(BARS_2024_01)
    assert lf.collect_schema().names() == pl.read_parquet_schema(BARS_2024_01).names()


@pytest.mark.parametrize(
    ("name", "symbol"),
    [
        ("BTCUSDT-1m.csv", "BTCUSDT"),
        ("BTC_USDT-1m.feather", "BTCUSDT"),
        ("eth-usdt_trades.parquet", "ETHUSDT"),
        ("binance_spot_solusdt_1m_2024.parquet", "SOLUSDT"),
        ("ETH_BTC-5m.csv", "ETHBTC"),
        ("binance_btcusdt-trades.parquet", "BTCUSDT"),
        ("export-1m.csv", None),
        ("2024_usdt.csv", None),
    ],
)
def test_symbol_from_name(name: str, symbol: str | None) -> None:
    assert symbol_from_name(Path(name)) == symbol


def test_cryptodatadownload_csv_reads_as_the_canonical_bars(tmp_path: Path) -> None:
    """A banner line, then `unix,date,symbol,...,Volume BTC,Volume USDT,tradecount`, newest
    first: the base asset's volume is the volume, `unix` (ms) the open time."""
    df = _bars("BTCUSDT")
    path = tmp_path / "Binance_BTCUSDT_1m.csv"
    body = (
        df.sort("open_time", descending=True)
        .select(
            pl.col("open_time").dt.epoch("ms").alias("unix"),
            pl.col("open_time").dt.strftime("%Y-%m-%d %H:%M:%S").alias("date"),
            pl.lit("BTC/USDT").alias("symbol"),
            "open",
            "high",
            "low",
            "close",
            pl.col("volume").alias("Volume BTC"),
            (pl.col("volume") * pl.col("close")).alias("Volume USDT"),
            pl.lit(7).alias("tradecount"),
        )
        .write_csv()
    )
    path.write_text("https://www.CryptoDataDownload.com\n" + body)
    assert _read(path).equals(normalized(df.lazy(), "bars").collect())


def test_text_times_that_are_not_times_are_refused_quoting_one(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-1m.csv"
    path.write_text("timestamp,open,high,low,close,volume\nyesterday,1,2,0.5,1.5,10\n")
    with pytest.raises(ValueError, match=r"'open_time' holds text that is not a time \('yest"):
        scan(path)

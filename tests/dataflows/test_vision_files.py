"""Binance's public data files as downloaded from data.binance.vision: zipped headerless CSV,
the symbol only in the file name, times in ms (µs for spot since 2025). The files here are the
shipped real bars and trades written in Binance's layout; each must read exactly as the same
rows from our parquet, alone, as a glob across files and units, and through a whole backtest.

Binance's klines carry quote volume, trade count and taker volumes, which the reader ignores
and our bar files lack: those columns are written as 0. The trades files are complete (quote
quantity = price × qty, as Binance computes it); the aggTrades file groups the capture's
consecutive trades of one time, price and side, as Binance's aggregation does. Symbols as other
tools write them (ccxt's "BTC/USDT") are read as the exchange ids."""

from __future__ import annotations

import zipfile
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from dataflows.backtest import BacktestSpec, run_backtest
from dataflows.datalist import file_inventory, kafka_inventory
from dataflows.ingest import ingest_file
from dataflows.io.files import normalized, scan
from tests.dataflows.flowkit import sma_config
from tests.paths import BARS_2024_01, TRADES

AUG8 = pl.col("trade_time") >= pl.datetime(2024, 8, 8, 23, 54, time_zone="UTC")
KLINE_HEADER = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
    "taker_buy_quote_volume,ignore"
)


def _zip(csv: Path) -> Path:
    out = csv.with_suffix(".zip")
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(csv, csv.name)
    csv.unlink()
    return out


def _klines(bars: pl.DataFrame, path: Path, unit: str = "ms", header: bool = False) -> Path:
    """Bars in Binance's kline layout (open time and close time as integers of `unit`)."""
    mult = {"ms": 1, "us": 1000}[unit]
    t = pl.col("open_time").dt.epoch("ms")
    bars.select(
        (t * mult).alias("open_time"),
        "open",
        "high",
        "low",
        "close",
        "volume",
        ((t + 59_999) * mult + (mult - 1)).alias("close_time"),
        *(pl.lit(0).alias(c) for c in KLINE_HEADER.split(",")[7:]),
    ).write_csv(path, include_header=header)
    return _zip(path)


def _btc_bars() -> pl.DataFrame:
    return pl.read_parquet(BARS_2024_01).filter(pl.col("symbol") == "BTCUSDT")


def _day(df: pl.DataFrame, day: int) -> pl.DataFrame:
    return df.filter(pl.col("open_time").dt.day() == day)


def test_a_kline_zip_reads_as_the_same_bars_in_either_unit(tmp_path: Path) -> None:
    bars = _btc_bars()
    want = normalized(pl.read_parquet(BARS_2024_01).lazy(), "bars", ["BTCUSDT"]).collect()
    for unit in ("ms", "us"):
        (tmp_path / unit).mkdir()
        path = _klines(bars, tmp_path / unit / "BTCUSDT-1m-2024-01.csv", unit)
        assert_frame_equal(normalized(scan(path), "bars").collect(), want)
    assert len(want) == 44_640


def test_a_glob_of_daily_files_across_the_unit_switch_is_one_series(tmp_path: Path) -> None:
    bars = _btc_bars()
    for day, unit in ((1, "ms"), (2, "ms"), (3, "us")):  # Binance's 2025 switch, mid-glob
        _klines(_day(bars, day), tmp_path / f"BTCUSDT-1m-2024-01-0{day}.csv", unit)
    got = normalized(scan(tmp_path / "BTCUSDT-1m-2024-01-*.zip"), "bars").collect()
    want = normalized(bars.filter(pl.col("open_time").dt.day() <= 3).lazy(), "bars").collect()
    assert_frame_equal(got, want)
    assert len(got) == 3 * 1440


def test_futures_files_have_a_header_and_their_venue_from_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "futures" / "um" / "daily" / "klines" / "BTCUSDT" / "1m"
    folder.mkdir(parents=True)
    path = _klines(_day(_btc_bars(), 1), folder / "BTCUSDT-1m-2024-01-01.csv", header=True)
    held, _ = file_inventory(path)
    assert [(d.symbol, d.venue, d.count) for d in held] == [
        ("BTCUSDT", "binance_usdm_futures", 1440)
    ]
    assert file_inventory(path, venue="binance_spot")[0] == []


def _spot_trades() -> pl.DataFrame:
    return pl.read_parquet(TRADES).filter(AUG8, pl.col("symbol") == "BTCUSDT")


def test_a_trades_file_reads_as_the_capture(tmp_path: Path) -> None:
    trades = _spot_trades()
    path = tmp_path / "BTCUSDT-trades-2024-08-08.csv"
    trades.select(
        "trade_id",
        "price",
        "qty",
        (pl.col("price") * pl.col("qty")).alias("quote_qty"),
        pl.col("trade_time").dt.epoch("ms"),
        pl.col("is_buyer_maker").replace_strict({True: "True", False: "False"}),
        pl.lit("True").alias("is_best_match"),
    ).write_csv(path, include_header=False)
    got = normalized(scan(_zip(path)), "trades").collect()
    # the capture's recorder clock (local_ts) is not in Binance's file: ts_init = exchange time
    want = normalized(trades.drop("local_ts").lazy(), "trades").collect()
    assert_frame_equal(got, want)
    assert len(got) == len(trades) > 9_000


def test_an_aggtrades_file_gives_the_same_bars(
    tmp_path: Path, ch_dsn: str, ch_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    trades = _spot_trades().sort("trade_id")
    key = ["trade_time", "price", "is_buyer_maker"]
    agg = (
        trades.with_columns(
            grp=pl.struct(key).rle_id()  # consecutive trades of one time, price and side
        )
        .group_by("grp", maintain_order=True)
        .agg(
            pl.col("trade_id").first().alias("first_trade_id"),
            pl.col("trade_id").last().alias("last_trade_id"),
            pl.col("qty").sum(),
            *(pl.col(c).first() for c in key),
        )
    )
    assert len(agg) < len(trades)
    path = tmp_path / "BTCUSDT-aggTrades-2024-08-08.csv"
    agg.select(
        pl.col("grp").alias("agg_trade_id"),
        "price",
        "qty",
        "first_trade_id",
        "last_trade_id",
        pl.col("trade_time").dt.epoch("ms"),
        "is_buyer_maker",
        pl.lit(True).alias("is_best_match"),
    ).write_csv(path, include_header=False)
    monkeypatch.setenv("CLICKHOUSE_DSN", ch_dsn)
    cfg = sma_config(None, clickhouse={"dsn": ch_dsn, "database": ch_db})
    runs = {}
    for name, src in (("agg", path), ("trades", tmp_path / "capture.parquet")):
        if name == "trades":
            trades.write_parquet(src)
        _, summary = run_backtest(
            cfg, BacktestSpec(f"file:{src}", ("BTCUSDT",)), None, progress=False
        )
        runs[name] = summary
    assert runs["agg"].n_bars == runs["trades"].n_bars > 0
    assert runs["agg"] == runs["trades"]


def test_a_backtest_of_binance_zips_equals_the_parquet(
    tmp_path: Path, ch_dsn: str, ch_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLICKHOUSE_DSN", ch_dsn)
    bars = _btc_bars()
    for day in range(1, 8):
        _klines(_day(bars, day), tmp_path / f"BTCUSDT-1m-2024-01-0{day}.csv")
    week = tmp_path / "week.parquet"
    bars.filter(pl.col("open_time").dt.day() <= 7).write_parquet(week)
    cfg = sma_config(None, clickhouse={"dsn": ch_dsn, "database": ch_db})
    got = [
        run_backtest(cfg, BacktestSpec(src, ()), None, progress=False)[1]
        for src in (f"file:{tmp_path}/BTCUSDT-1m-2024-01-0*.zip", f"file:{week}")
    ]
    assert got[0] == got[1]
    assert got[0].n_bars == 7 * 1440 and got[0].n_trades > 0


def test_malformed_binance_files_fail_by_name(tmp_path: Path) -> None:
    bad = tmp_path / "BTCUSDT-1m-2024-01.csv"
    bad.write_text("1704067200000,42283.58,42298.62,42261.02,42298.61,35.92724\n")
    with pytest.raises(ValueError, match=r"has 12 columns, this one has 6"):
        scan(bad)
    two = tmp_path / "BTCUSDT-1m-2024-02.zip"
    with zipfile.ZipFile(two, "w") as z:
        z.writestr("a.csv", "x\n")
        z.writestr("b.csv", "y\n")
    with pytest.raises(ValueError, match=r"must hold one \.csv file"):
        scan(two)
    whole = _klines(_day(_btc_bars(), 1), tmp_path / "BTCUSDT-1m-2024-01-01.csv")
    cut = tmp_path / "BTCUSDT-1m-2024-01-02.zip"  # a download cut short
    cut.write_bytes(whole.read_bytes()[:2000])
    with pytest.raises(ValueError, match=r"BTCUSDT-1m-2024-01-02.zip is not a readable zip"):
        scan(cut)
    mark = tmp_path / "futures" / "um" / "daily" / "markPriceKlines" / "BTCUSDT" / "1m"
    mark.mkdir(parents=True)
    (mark / "BTCUSDT-1m-2024-01-01.csv").write_text("1704067200000,1,1,1,1,0\n")
    with pytest.raises(ValueError, match=r"markPriceKlines folder: mark, index and premium"):
        scan(mark / "BTCUSDT-1m-2024-01-01.csv")
    renamed = tmp_path / "btc_january.zip"  # a Binance download under a name of one's own
    _klines(_day(_btc_bars(), 1), tmp_path / "btc_january.csv")
    with pytest.raises(ValueError, match=r"btc_january.zip has no header row \(its first line"):
        scan(renamed)
    flags = tmp_path / "BTCUSDT-trades-2024-08-08.csv"
    flags.write_text("1,60000.0,0.1,6000.0,1723161240000,maybe,True\n")
    with pytest.raises(ValueError, match=r"is_buyer_maker must be true or false; 1 rows"):
        scan(flags)


def test_symbols_written_by_other_tools_are_the_exchange_ids() -> None:
    """ccxt's "BTC/USDT", "btc-usdt" and "eth_usdt" name the config's BTCUSDT and ETHUSDT; a
    derivative's "BTC/USDT:USDT" is not spot BTCUSDT and keeps its name."""
    bars = pl.read_parquet(BARS_2024_01)
    names = {"BTCUSDT": "BTC/USDT", "ETHUSDT": "eth_usdt"}
    renamed = bars.with_columns(pl.col("symbol").replace_strict(names))
    want = normalized(bars.lazy(), "bars").collect()
    assert_frame_equal(normalized(renamed.lazy(), "bars", ["BTCUSDT", "ETHUSDT"]).collect(), want)
    dashed = bars.with_columns(symbol=pl.lit("btc-usdt"))
    assert normalized(dashed.lazy(), "bars").collect()["symbol"].unique().to_list() == ["BTCUSDT"]
    perp = bars.with_columns(symbol=pl.lit("BTC/USDT:USDT"))
    assert normalized(perp.lazy(), "bars", ["BTCUSDT"]).collect().is_empty()
    assert normalized(perp.lazy(), "bars").collect()["symbol"].unique().to_list() == [
        "BTC/USDT:USDT"
    ]


@pytest.mark.kafka
def test_binance_zips_ingest_to_kafka_like_the_parquet(
    tmp_path: Path, kafka_topic, kafka_bootstrap: str
) -> None:
    """`ingest` reads the files as every command does: the topic fed from a glob of daily zips
    (one in µs) holds what the parquet of the same bars holds."""
    bars = _btc_bars()
    for day, unit in ((1, "ms"), (2, "us")):
        _klines(_day(bars, day), tmp_path / f"BTCUSDT-1m-2024-01-0{day}.csv", unit)
    topic = kafka_topic(partitions=2, suffix="md.bars.v1")
    glob = tmp_path / "BTCUSDT-1m-2024-01-0*.zip"
    assert ingest_file(glob, kafka_bootstrap, topic=topic, progress=False) == 2 * 1440
    two_days = tmp_path / "two_days.parquet"
    bars.filter(pl.col("open_time").dt.day() <= 2).write_parquet(two_days)
    got, kind = kafka_inventory(kafka_bootstrap, topic)
    assert kind == "bars"
    assert got == file_inventory(two_days)[0]

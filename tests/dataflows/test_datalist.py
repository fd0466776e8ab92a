"""`dataflows.datalist`: what a source holds, per symbol, on real data — a file (the 2021 BTCUSDT
year with its 6 real Binance outages, a glob, a trade capture) and a real Kafka topic — each
equal to an independent polars computation."""

from __future__ import annotations

import polars as pl
import pytest
from rich.console import Console

from dataflows.datalist import (
    SymbolData,
    describe,
    file_inventory,
    inventory,
    kafka_inventory,
    print_inventory,
)
from dataflows.ingest import ingest_file
from infra.faults import Fault
from tests.dataflows.flowkit import sma_config
from tests.paths import BARS_2024_01, BTC_1M_2021, SHARED, TRADES

MINUTE_NS = 60 * 10**9


def _expected_bars(df: pl.DataFrame, ts_col: str = "open_time") -> list[SymbolData]:
    """Independent: polars only, per symbol, from the raw file columns."""
    df = df.with_columns(pl.col(ts_col).dt.epoch("ns").alias("t"))
    out = []
    for sym in sorted(df["symbol"].unique().to_list()):
        t = df.filter(pl.col("symbol") == sym).sort("t")["t"]
        d = t.diff().drop_nulls()
        big = d.filter(d > MINUTE_NS)
        out.append(
            SymbolData(
                symbol=sym,
                first_ns=t.min(),
                last_ns=t.max(),
                count=t.len(),
                interval_ns=MINUTE_NS,
                gaps=big.len(),
                missing=int((big // MINUTE_NS - 1).sum()),
                duplicates=int((d == 0).sum()),
            )
        )
    return out


@pytest.mark.skipif(not BTC_1M_2021.exists(), reason="needs ../shared/data")
def test_file_inventory_of_a_real_year_finds_its_six_outages() -> None:
    data, kind = file_inventory(str(BTC_1M_2021))
    assert kind == "bars"
    assert data == _expected_bars(pl.read_parquet(BTC_1M_2021))
    (btc,) = data
    assert btc.gaps == 6  # /work/shared/data/README.md: 2021 has 6 gaps (real outages)
    assert btc.count + btc.missing == 365 * 1440  # the gaps are all that is missing
    assert btc.first_ns == 1609459200 * 10**9  # 2021-01-01 00:00 UTC


@pytest.mark.skipif(not BTC_1M_2021.exists(), reason="needs ../shared/data")
def test_file_inventory_of_a_glob_lists_every_symbol() -> None:
    pattern = SHARED / "bars_1m" / "binance_spot_*usdt_1m_2023.parquet"
    data, kind = inventory(f"file:{pattern}", sma_config())
    assert kind == "bars"
    assert [d.symbol for d in data] == ["BTCUSDT", "ETHUSDT"]
    assert data == _expected_bars(pl.read_parquet(pattern))
    assert sum(d.gaps for d in data) >= 1  # README: 2023 has 1 gap


def _expected_trades(path) -> list[tuple[str, int, int, int]]:
    """(symbol, first ns, last ns, count) of a trade capture's spot trades, by polars."""
    spot = pl.read_parquet(path).filter(pl.col("venue") == "binance_spot")
    return list(
        spot.with_columns(pl.col("trade_time").dt.epoch("ns").alias("t"))
        .group_by("symbol")
        .agg(pl.col("t").min().alias("lo"), pl.col("t").max().alias("hi"), pl.len())
        .sort("symbol")
        .iter_rows()
    )


def test_file_inventory_of_trades_counts_and_spans() -> None:
    data, kind = file_inventory(str(TRADES))
    assert kind == "trades"
    assert [(d.symbol, d.first_ns, d.last_ns, d.count) for d in data] == _expected_trades(TRADES)
    assert all((d.interval_ns, d.gaps, d.missing, d.duplicates) == (0, 0, 0, 0) for d in data)


def test_bad_source_strings() -> None:
    with pytest.raises(ValueError, match="kafka:<topic> or file:<path>"):
        inventory("s3:bucket/x", sma_config())
    with pytest.raises(FileNotFoundError, match="no such file"):
        inventory("file:/nonexistent.parquet", sma_config())


def test_describe_and_print_inventory() -> None:
    data, _ = file_inventory(str(BARS_2024_01))
    assert describe(data, unit="bars") == (
        "BTCUSDT: 44,640 bars from 2024-01-01 00:00:00 to 2024-01-31 23:59:00 UTC; "
        "ETHUSDT: 44,640 bars from 2024-01-01 00:00:00 to 2024-01-31 23:59:00 UTC"
    )
    assert describe(data, ["ETHUSDT"], "bars").startswith("ETHUSDT: 44,640 bars")
    assert describe([]) == "nothing"
    console = Console(record=True, width=160)
    print_inventory(data, f"file:{BARS_2024_01.name}", console)
    text = console.export_text()
    for needle in ("BTCUSDT", "ETHUSDT", "2024-01-01 00:00:00", "2024-01-31 23:59:00", "44,640"):
        assert needle in text
    print_inventory([], "empty", console)
    assert "the source holds no records" in console.export_text()


@pytest.mark.kafka
def test_kafka_inventory_equals_the_file_it_was_ingested_from(
    kafka_topic, kafka_bootstrap: str
) -> None:
    topic = kafka_topic(partitions=3, suffix="md.bars.v1")
    assert ingest_file(BARS_2024_01, kafka_bootstrap, "bars", topic=topic, progress=False) == 89_280
    cfg = sma_config(kafka={"bootstrap": kafka_bootstrap})
    data, kind = inventory(f"kafka:{topic}", cfg)
    assert kind == "bars"
    assert data == _expected_bars(pl.read_parquet(BARS_2024_01))

    # The same day ingested again: every record of it is a duplicate, nothing else changes.
    day = (1704067200 * 10**9, (1704067200 + 86400) * 10**9)
    ingest_file(
        BARS_2024_01, kafka_bootstrap, "bars", topic=topic, start_ns=day[0], end_ns=day[1],
        progress=False,
    )  # fmt: skip
    again, _ = kafka_inventory(kafka_bootstrap, topic)
    for before, after in zip(data, again, strict=True):
        assert after.count == before.count + 1440
        assert after.duplicates == 1440
        assert (after.first_ns, after.last_ns, after.gaps) == (before.first_ns, before.last_ns, 0)


@pytest.mark.kafka
def test_kafka_inventory_of_a_trades_topic_and_a_missing_topic(
    kafka_topic, kafka_bootstrap: str
) -> None:
    topic = kafka_topic(partitions=2, suffix="md.trades.v1")
    n = ingest_file(TRADES, kafka_bootstrap, "trades", topic=topic, progress=False)
    data, kind = kafka_inventory(kafka_bootstrap, topic)
    assert kind == "trades"
    assert sum(d.count for d in data) == n
    assert [(d.symbol, d.first_ns, d.last_ns, d.count) for d in data] == _expected_trades(TRADES)
    assert all(d.gaps == 0 and d.interval_ns == 0 for d in data)
    with pytest.raises(Fault, match="does not exist"):
        kafka_inventory(kafka_bootstrap, f"{topic}.missing")

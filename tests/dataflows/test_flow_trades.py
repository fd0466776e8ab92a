"""Trades -> bars inside the dataflow (1 and 2 workers) equal Binance's 1m klines; bad input goes
to dead letters with reasons while the flow keeps running."""

from __future__ import annotations

import itertools
from typing import NamedTuple

import polars as pl
import pytest

from dataflows.io.files import FileSource, normalized, scan, to_messages
from schemas.codec import encode
from schemas.messages import Bar, DeadLetter, Metric, Trade
from tests.dataflows.flowkit import batches, run_flow, sma_config
from tests.paths import KLINES, TRADES


class Raw(NamedTuple):  # the shape of a raw Kafka message as sources deliver it
    key: str | None
    value: bytes
    timestamp_ms: int


def _klines() -> dict[tuple[str, int], tuple[float, ...]]:
    k = pl.read_parquet(KLINES).with_columns(pl.col("open_time").dt.epoch("ns"))
    return {
        (r["symbol"], r["open_time"]): (r["open"], r["high"], r["low"], r["close"], r["volume"])
        for r in k.iter_rows(named=True)
    }


def _complete_minutes(trades: list[Trade]) -> set[tuple[str, int]]:
    """Minutes strictly inside a capture window (captures are separated by > 60 s gaps)."""
    out: set[tuple[str, int]] = set()
    for sym in {t.symbol for t in trades}:
        ts = sorted(t.ts_event for t in trades if t.symbol == sym)
        windows, start = [], ts[0]
        for a, b in itertools.pairwise(ts):
            if b - a > 60_000_000_000:
                windows.append((start, a))
                start = b
        windows.append((start, ts[-1]))
        for lo, hi in windows:
            first, last = lo // 60_000_000_000 + 1, hi // 60_000_000_000 - 1
            out |= {(sym, m * 60_000_000_000) for m in range(first, last + 1)}
    return out


@pytest.mark.parametrize("workers", [1, 2])
def test_bars_from_real_trades_equal_binance_klines(workers: int) -> None:
    cfg = sma_config(["BTCUSDT", "ETHUSDT"])
    out = run_flow(cfg, FileSource(TRADES, batch_size=1000), kind="trades", workers=workers)
    bars = [m for m in out if isinstance(m, Bar)]
    keys = [(b.symbol, b.ts_event) for b in bars]
    assert len(keys) == len(set(keys)), "a bar was emitted twice"
    klines = _klines()
    trades = to_messages(normalized(scan(TRADES), "trades").collect(), "trades")
    complete = _complete_minutes(trades)
    compared = [b for b in bars if (b.symbol, b.ts_event) in complete]
    assert len(compared) >= 20
    for b in compared:
        assert (b.open, b.high, b.low, b.close, b.volume) == klines[(b.symbol, b.ts_event)], b
    assert not [m for m in out if isinstance(m, DeadLetter)]
    built = {m.labels: m.value for m in out if isinstance(m, Metric) and m.name == "bars_built"}
    assert sum(built.values()) == len(bars)


def _raw(msg: Trade) -> Raw:
    return Raw(msg.symbol, encode(msg), msg.ts_event // 1_000_000)


def test_bad_messages_go_to_dead_letters_and_flow_keeps_running() -> None:
    cfg = sma_config(["BTCUSDT", "ETHUSDT"])
    trades = to_messages(
        normalized(scan(TRADES), "trades", ["BTCUSDT"]).collect().head(3000), "trades"
    )
    good = [_raw(t) for t in trades]
    t0 = trades[1500]
    bad = [
        Raw("BTCUSDT", b'{"symbol": "BTCUSDT", "price": ', 1),
        Raw("BTCUSDT", b"\xff\xfe not utf8", 2),
        Raw("BTCUSDT", encode(Trade(**{**_fields(t0), "price": -1.0})), 3),
        Raw("BTCUSDT", encode(Trade(**{**_fields(t0), "size": 0.0})), 4),
        Raw("DOGEUSDT", encode(Trade(**{**_fields(t0), "symbol": "DOGEUSDT"})), 5),
        Raw("BTCUSDT", encode(t0).replace(b'"price":', b'"price":"NaN","x":'), 6),
        # a trade far in the past: its minute closed long ago -> late
        Raw(
            "BTCUSDT",
            encode(Trade(**{**_fields(t0), "trade_id": 1, "ts_event": trades[0].ts_event})),
            7,
        ),
    ]
    stream = good[:1500] + bad + good[1500:]
    out = run_flow(cfg, batches(stream, 256), kind="trades", symbols=["BTCUSDT"])
    dead = [m for m in out if isinstance(m, DeadLetter)]
    reasons = sorted(d.reason.split(":")[0].split(" ")[0] for d in dead)
    assert len(dead) == len(bad), reasons
    assert any(d.reason.startswith("malformed") for d in dead)
    assert any("bad price" in d.reason for d in dead)
    assert any("bad size" in d.reason for d in dead)
    assert any("unknown symbol 'DOGEUSDT'" in d.reason for d in dead)
    assert any(d.reason.startswith("late") for d in dead)
    assert all(d.payload for d in dead)
    # the good trades still made bars, as many as without the bad input
    clean = run_flow(cfg, batches(good, 256), kind="trades", symbols=["BTCUSDT"])
    assert [m for m in out if isinstance(m, Bar)] == [m for m in clean if isinstance(m, Bar)]


def _fields(t: Trade) -> dict[str, object]:
    return {f: getattr(t, f) for f in t.__struct_fields__}

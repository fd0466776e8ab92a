"""Benchmark: trades -> 1m bars throughput (ticks/s) on real Binance trades.

The 37.5k real spot trades shipped in examples/data are replayed N times back to back (each copy
shifted later in time by whole days, so every copy makes real bars), measured three ways:
  operator   BarBuilder.update on one big list (no Bytewax)
  flow       build_flow(kind="trades") from decoded Trade batches (Bytewax, 1 worker)
  flow+json  the same, starting from raw JSON payloads as they come off Kafka (decode included)

    .venv/bin/python bench/ticks_to_bars.py [--copies 40]
"""

from __future__ import annotations

import argparse
import gc
import time
from typing import NamedTuple

from bytewax.testing import TestingSink, TestingSource, run_main

from dataflows.flow import FlowSinks, build_flow
from dataflows.io.files import normalized, scan, to_messages
from operators.bars import BarBuilder
from schemas.codec import encode
from schemas.config import Config
from schemas.messages import Bar, Trade

DAY = 86_400_000_000_000
TRADES = "examples/data/binance_spot_trades_captures.parquet"


class Raw(NamedTuple):
    key: str
    value: bytes
    timestamp_ms: int


def load(copies: int) -> list[Trade]:
    base = to_messages(normalized(scan(TRADES), "trades").collect(), "trades")
    span = (max(t.ts_event for t in base) // DAY + 1 - min(t.ts_event for t in base) // DAY) * DAY
    out: list[Trade] = []
    for k in range(copies):
        shift = k * span
        out += [
            Trade(
                t.symbol,
                t.ts_event + shift,
                t.ts_init + shift,
                t.trade_id + k * 10**10,
                t.price,
                t.size,
                t.aggressor,
            )
            for t in base
        ]
    return out


def timed(fn) -> float:
    gc.collect()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=40)
    ap.add_argument("--batch", type=int, default=10_000)
    args = ap.parse_args()
    trades = load(args.copies)
    n = len(trades)
    by_sym: dict[str, list[Trade]] = {}
    for t in trades:
        by_sym.setdefault(t.symbol, []).append(t)
    cfg = Config(symbols=sorted(by_sym))

    def operator_only() -> None:
        for sym, ts in by_sym.items():
            b = BarBuilder(sym, 60 * 10**9, 2 * 10**9)
            b.update(ts)
            b.flush()

    def flow(items: list) -> None:
        out: list = []
        batches = [items[i : i + args.batch] for i in range(0, len(items), args.batch)]
        run_main(
            build_flow(
                cfg, TestingSource(batches), FlowSinks(events=TestingSink(out)), kind="trades"
            )
        )
        assert sum(isinstance(m, Bar) for m in out) > 0

    raws = [Raw(t.symbol, encode(t), t.ts_event // 1_000_000) for t in trades]
    results = {
        "operator": timed(operator_only),
        "flow": timed(lambda: flow(trades)),
        "flow+json": timed(lambda: flow(raws)),
    }
    print(f"{n:,} real trades ({args.copies} copies of the shipped captures), batch {args.batch}")
    for name, dt in results.items():
        print(f"  {name:10s} {n / dt:12,.0f} ticks/s   ({dt:.2f} s)")


if __name__ == "__main__":
    main()

"""Benchmark: feature throughput on replay, bars/s on one core.

1. `FeatureSet.update` alone (the operator every flow runs), per set: ETHUSDT 1m bars with the
   BTCUSDT bar at the same minute as the pair features' reference (real Binance data, one year
   from ../shared/data when present, else the shipped January 2024).
2. The Bytewax feature flow (`build_feature_flow`: decode/validate, sequence guard, alignment,
   features) on one worker, rows to a discarding sink, for both symbols.

    .venv/bin/python bench/features.py [--sets tcn12,full,core] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import run_main

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dataflows.flow import build_feature_flow  # noqa: E402
from dataflows.io.files import FileSource, normalized, scan, to_messages  # noqa: E402
from operators.features import feature_set  # noqa: E402
from schemas.config import load_config  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "bars_1m"
SHIPPED = ROOT / "examples" / "data" / "binance_spot_btc_eth_1m_2024-01.parquet"


def source_path() -> tuple[str, str]:
    year = sorted(SHARED.glob("binance_spot_*usdt_1m_2024.parquet"))
    if len(year) == 2:
        return str(SHARED / "binance_spot_*usdt_1m_2024.parquet"), "2024, both symbols"
    return str(SHIPPED), "January 2024 (shipped)"


def load_bars(path: str) -> dict[str, list[Any]]:
    df = normalized(scan(path), "bars").collect()
    return {
        s: to_messages(df.filter(pl.col("symbol") == s), "bars") for s in ("BTCUSDT", "ETHUSDT")
    }


def bench_set(name: str, bars: dict[str, list[Any]], repeat: int) -> float:
    eth, btc = bars["ETHUSDT"], bars["BTCUSDT"]
    by_ts = {b.ts_event: b for b in btc}
    refs = [{"BTCUSDT": by_ts[b.ts_event]} if b.ts_event in by_ts else {} for b in eth]
    best = 0.0
    for _ in range(repeat):
        fs = feature_set(name)
        upd = fs.update
        t0 = time.perf_counter()
        for b, r in zip(eth, refs, strict=True):
            upd(b, r)
        best = max(best, len(eth) / (time.perf_counter() - t0))
    return best


class _Discard(DynamicSink[Any]):
    def build(self, step_id: str, worker_index: int, worker_count: int) -> Any:
        class P(StatelessSinkPartition[Any]):
            def write_batch(self, items: list[Any]) -> None:
                pass

        return P()


def bench_flow(name: str, path: str) -> tuple[int, float]:
    cfg = load_config(features={"set": name})
    src = FileSource(path, ["BTCUSDT", "ETHUSDT"], batch_size=10_000)
    n = int(src._lf.select(pl.len()).collect().item())
    flow = build_feature_flow(cfg, src, feature_set(name), kind="bars", rows=_Discard())
    t0 = time.perf_counter()
    run_main(flow)
    return n, n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", default="tcn12,full,core")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-flow", action="store_true")
    args = ap.parse_args()
    path, what = source_path()
    bars = load_bars(path)
    print(f"data: real Binance 1m bars, {what}: {len(bars['ETHUSDT']):,} ETHUSDT bars")
    for name in args.sets.split(","):
        cols = len(feature_set(name).columns)
        rate = bench_set(name, bars, args.repeat)
        line = f"{name:>6} ({cols:2d} columns): FeatureSet.update {rate:>10,.0f} bars/s"
        if not args.no_flow:
            n, flow_rate = bench_flow(name, path)
            line += f" | Bytewax feature flow {flow_rate:>9,.0f} bars/s ({n:,} bars)"
        print(line, flush=True)


if __name__ == "__main__":
    main()

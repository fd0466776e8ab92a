"""Benchmark: whole-command backtest replay throughput (bars/s) on a year of real 1m bars.

Runs `cryptoflow backtest` as a subprocess (startup, replay, ClickHouse sink, read-back and
report all included) over BTCUSDT 2024 (527,040 real Binance 1m bars from ../shared/data):
  file    --source file:<parquet>
  kafka   --source kafka:<topic>   (the year is ingested into a fresh topic first, untimed;
          orders/fills are published back to Kafka as in any Kafka replay)
ClickHouse is the embedded chDB in a temporary directory. Kafka: $KAFKA_BOOTSTRAP, or the local
broker that `cryptoflow infra up` manages (started if needed).

    .venv/bin/python bench/replay_throughput.py [--year 2024] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "bars_1m"


def run_cli(args: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "dataflows.cli", *args],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--year", default="2024")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--skip-kafka", action="store_true")
    args = ap.parse_args()
    path = SHARED / f"binance_spot_btcusdt_1m_{args.year}.parquet"
    n = pl.scan_parquet(path).select(pl.len()).collect().item()
    common = ["--symbols", "BTCUSDT", "--config", "examples/sma_cross.toml", "--no-progress"]
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "CRYPTOFLOW_DATA_DIR": tmp}
        env.pop("CLICKHOUSE_DSN", None)
        best = min(
            run_cli(["backtest", "--source", f"file:{path}", *common], env)
            for _ in range(args.repeat)
        )
        results["file source"] = best
        if not args.skip_kafka:
            from dataflows.ingest import ingest_file
            from infra.kafka import broker
            from schemas.config import load_config

            cfg = load_config(ROOT / "examples" / "sma_cross.toml")
            bootstrap = broker.up(cfg.kafka.bootstrap, ROOT / "var", cfg.kafka.partitions)
            env["KAFKA_BOOTSTRAP"] = bootstrap
            topic = f"bench.{uuid.uuid4().hex[:8]}.md.bars.v1"
            broker.ensure_topics(bootstrap, {topic: 4})
            try:
                t0 = time.perf_counter()
                ingest_file(path, bootstrap, "bars", topic=topic, progress=False)
                ingest_s = time.perf_counter() - t0
                print(f"ingest: {n / ingest_s:,.0f} msgs/s (delivery verified)")
                results["kafka source"] = min(
                    run_cli(["backtest", "--source", f"kafka:{topic}", *common], env)
                    for _ in range(args.repeat)
                )
            finally:
                broker.delete_topics(bootstrap, [topic])
    print(f"{n:,} real BTCUSDT 1m bars ({args.year}), whole command, best of {args.repeat}:")
    for name, dt in results.items():
        print(f"  {name:13s} {n / dt:10,.0f} bars/s   ({dt:.2f} s)")


if __name__ == "__main__":
    main()

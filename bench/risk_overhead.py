"""Benchmark: what the risk layer costs per bar (issue 9, item 8).

Two measurements on a year of real 1m bars of BTCUSDT + ETHUSDT (../shared/data, 2024):

1. The account step alone (`AccountTrader.update`, the Bytewax-free operator) fed the same
   (bar, SMA signal) decisions in 1,000-pair batches, under the plain reference profile
   (`examples/sma_cross.toml`: risk off, no lot rounding, no volume cap) and under
   `examples/risk_limits.toml` with its fees and volume cap but risk off, then with every rule
   on. "risk layer" = every rule on minus risk off on the same execution settings, in µs per
   symbol-bar.
2. The whole `cryptoflow backtest` command (startup, replay, ClickHouse, report) over the same
   two-symbol year with each config.

    .venv/bin/python bench/risk_overhead.py [--year 2024] [--skip-cli]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data" / "bars_1m"

from bench.replay_throughput import run_cli  # noqa: E402
from dataflows.trader import new_trader  # noqa: E402
from operators.strategy_sma_cross import SmaCross  # noqa: E402
from schemas.config import Config, load_config  # noqa: E402
from schemas.messages import NS_PER_MINUTE, Bar  # noqa: E402

SYMBOLS = ["BTCUSDT", "ETHUSDT"]


def load(year: str) -> pl.DataFrame:
    frames = [
        pl.read_parquet(SHARED / f"binance_spot_{s.lower()}_1m_{year}.parquet") for s in SYMBOLS
    ]
    return pl.concat(frames).sort("open_time", "symbol")


def decisions(df: pl.DataFrame, cfg: Config) -> list[tuple[Bar, object]]:
    s = cfg.strategy
    strat = {sym: SmaCross(sym, s.fast, s.slow, s.price) for sym in SYMBOLS}
    ts = df["open_time"].dt.epoch("ns").to_list()
    cols = [df[c].to_list() for c in ("symbol", "open", "high", "low", "close", "volume")]
    out = []
    for t, sym, o, h, lo, c, v in zip(ts, *cols, strict=True):
        bar = Bar(sym, t, t + NS_PER_MINUTE, o, h, lo, c, v)
        out.append((bar, strat[sym].update(bar)))
    return out


def time_trader(cfg: Config, pairs: list, batch: int = 1_000) -> tuple[float, int]:
    trader = new_trader(cfg, SYMBOLS)
    n_out = 0
    t0 = time.perf_counter()
    for i in range(0, len(pairs), batch):
        n_out += len(trader.update(pairs[i : i + batch]))
    n_out += len(trader.flush())
    return time.perf_counter() - t0, n_out


def run_backtest(config: str, path: Path, env: dict[str, str]) -> float:
    return run_cli(
        ["backtest", "--source", f"file:{path}", "--config", config, "--no-progress"], env
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--year", default="2024")
    ap.add_argument("--skip-cli", action="store_true")
    args = ap.parse_args()
    df = load(args.year)
    n = df.height
    plain = load_config(ROOT / "examples" / "sma_cross.toml")
    risky = load_config(ROOT / "examples" / "risk_limits.toml")
    risk_off = Config.model_validate(
        {**risky.model_dump(), "risk": {**risky.risk.model_dump(), "enabled": False}}
    )
    pairs = decisions(df, plain)
    print(f"{n:,} real 1m bars ({' + '.join(SYMBOLS)}, {args.year}); account step alone:")
    times = {}
    for name, cfg in (
        ("plain reference", plain),
        ("risk_limits, risk off", risk_off),
        ("risk_limits, every rule", risky),
    ):
        dt, n_out = time_trader(cfg, pairs)
        times[name] = dt
        print(f"  {name:24s} {dt / n * 1e6:6.2f} µs/bar  ({n / dt:,.0f} bars/s, {n_out:,} events)")
    extra = (times["risk_limits, every rule"] - times["risk_limits, risk off"]) / n * 1e6
    print(f"  risk layer: {extra:+.2f} µs per bar (target <= 2)")
    if args.skip_cli:
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "two_symbols.parquet"
        df.write_parquet(path)
        env = {**os.environ, "CRYPTOFLOW_DATA_DIR": tmp}
        env.pop("CLICKHOUSE_DSN", None)
        print("whole backtest command:")
        for config in ("examples/sma_cross.toml", "examples/risk_limits.toml"):
            dt = run_backtest(config, path, env)
            print(f"  {config:28s} {dt:6.2f} s  ({n / dt:,.0f} bars/s)")


if __name__ == "__main__":
    main()

"""Paths of the real market data shipped in examples/data (see its PROVENANCE.md)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "data"
BARS_2024_01 = DATA / "binance_spot_btc_eth_1m_2024-01.parquet"
TRADES = DATA / "binance_spot_trades_captures.parquet"
USDM_TRADES = DATA / "binance_usdm_trades_capture_2024-08-08.parquet"
KLINES = DATA / "binance_spot_klines_1m_capture_minutes.parquet"


# The full data set lives beside the repo (CI clones with ../shared next to it).
SHARED = ROOT.parent / "shared" / "data"
BTC_1M_2021 = SHARED / "bars_1m" / "binance_spot_btcusdt_1m_2021.parquet"

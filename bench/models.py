"""Benchmark: scoring latency of a model producer, one row at a time (live) and a batch at a time
(replay), for XGBoost (3-class) and LightGBM (binary), 300 trees, one thread.

Features: the `full` set computed by the streaming operators over the shipped real January 2024
ETHUSDT bars (BTCUSDT as the pair reference); labels: the sign of the 10-bar forward return. The
timed call is `ModelProducer.score` — what the flow calls — so it includes building the feature
matrix, calibration (Platt), the decision rule and the `Prediction`/`Signal` structs.

    .venv/bin/python bench/models.py [--rows 2000] [--trees 300]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np
import polars as pl
import xgboost as xgb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from operators.features import feature_set  # noqa: E402
from operators.models.decision import ThresholdDecision  # noqa: E402
from operators.models.producers import ModelProducer  # noqa: E402
from operators.models.tree import Calibration, ModelSpec, TreeModel  # noqa: E402
from schemas.messages import Bar  # noqa: E402

DATA = ROOT / "examples" / "data" / "binance_spot_btc_eth_1m_2024-01.parquet"


def bars(symbol: str) -> list[Bar]:
    df = pl.read_parquet(DATA).filter(pl.col("symbol") == symbol).sort("open_time")
    ts = df["open_time"].dt.epoch("ns").to_list()
    cols = [df[c].to_list() for c in ("open", "high", "low", "close", "volume")]
    return [
        Bar(symbol, t, t + 60 * 10**9, o, h, lo, c, v)
        for t, o, h, lo, c, v in zip(ts, *cols, strict=True)
    ]


def rows() -> tuple[list[tuple[Bar, tuple[float, ...]]], np.ndarray, tuple[str, ...], str]:
    fs = feature_set("full")
    eth, btc = bars("ETHUSDT"), {b.ts_event: b for b in bars("BTCUSDT")}
    out = []
    for b in eth:
        ref = {"ETHUSDT": b} | ({"BTCUSDT": btc[b.ts_event]} if b.ts_event in btc else {})
        out.append((b, fs.update(b, ref)))
    out = out[fs.warmup :]
    close = np.array([b.close for b, _ in out])
    fwd = np.roll(close, -10) / close - 1.0
    y = np.where(fwd > 1e-3, 2, np.where(fwd < -1e-3, 0, 1))
    return out, y, fs.columns, fs.version


def latency(p: ModelProducer, rs: list[tuple[Bar, tuple[float, ...]]], n: int) -> np.ndarray:
    t = np.empty(n)
    for i in range(n):
        r = [rs[i % len(rs)]]
        t0 = time.perf_counter_ns()
        p.score(r)
        t[i] = time.perf_counter_ns() - t0
    return t / 1e3  # µs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=2000, help="single-row calls timed per model")
    ap.add_argument("--trees", type=int, default=300)
    args = ap.parse_args()
    rs, y, cols, version = rows()
    x = np.array([v for _, v in rs])
    print(f"{len(rs):,} real rows x {len(cols)} features (full set), {args.trees} trees, 1 thread")
    xparams = {"objective": "multi:softprob", "num_class": 3, "max_depth": 6, "nthread": 1}
    xb = xgb.train(xparams, xgb.DMatrix(x, y), args.trees)
    lparams = {"objective": "binary", "num_leaves": 31, "num_threads": 1, "verbose": -1}
    lb = lgb.train(lparams, lgb.Dataset(x, (y == 2).astype(int)), args.trees)
    models = {
        "xgboost": TreeModel(
            ModelSpec(
                "xgboost",
                (-1, 0, 1),
                cols,
                "full",
                version,
                Calibration("platt", (-4.0, -4.0, -4.0), (2.0, 2.0, 2.0)),
            ),
            xb,
        ),
        "lightgbm": TreeModel(
            ModelSpec(
                "lightgbm", (0, 1), cols, "full", version, Calibration("platt", (-4.0,), (2.0,))
            ),
            lb,
        ),
    }
    for kind, m in models.items():
        dec = ThresholdDecision(m.spec.classes)
        p = ModelProducer("bench", m, kind, "v1", cols, version, 0, dec)
        latency(p, rs, 200)  # warm up
        lat = latency(p, rs, args.rows)
        t0 = time.perf_counter()
        for i in range(0, len(rs), 1000):
            p.score(rs[i : i + 1000])
        batch = len(rs) / (time.perf_counter() - t0)
        p50, p99 = np.percentile(lat, [50, 99])
        print(
            f"{kind:9s} one row: p50 {p50:7.1f} µs  p99 {p99:7.1f} µs | batches of 1000: "
            f"{batch:,.0f} rows/s"
        )


if __name__ == "__main__":
    main()

"""Benchmark: scoring latency of a model producer, one row at a time (live) and a batch at a time
(replay), for XGBoost (3-class) and LightGBM (binary), 300 trees, one thread.

Features: the `full` set computed by the streaming operators over the shipped real January 2024
ETHUSDT bars (BTCUSDT as the pair reference); labels: the sign of the 10-bar forward return.
Three timings per model (XGBoost twice: 300 trees = 100 rounds x 3 classes, and 300 rounds =
900 trees), each one row at a time (p50/p99) and in batches of 1000 (rows/s):
  stock     the booster's own predict (XGBoost inplace_predict, LightGBM Booster.predict)
  forest    `TreeModel.raw_proba`: the flattened forest's kernel (ADR 0013), what scoring uses
  producer  `ModelProducer.score` — what the flow calls — so it adds building the feature
            matrix, calibration (Platt), the decision rule, the signals and the block of
            `Prediction` rows
plus the one-off costs: flattening the booster, the probe check, loading the compiled kernel.

    .venv/bin/python bench/models.py [--rows 2000] [--trees 300]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl
import xgboost as xgb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from operators.features import feature_set  # noqa: E402
from operators.models import flat_forest, forest_kernels  # noqa: E402
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


def latency(score: Callable[[Any], object], rs: Sequence[Any], n: int) -> np.ndarray:
    t = np.empty(n)
    for i in range(n):
        r = rs[i % len(rs)]
        t0 = time.perf_counter_ns()
        score(r)
        t[i] = time.perf_counter_ns() - t0
    return t / 1e3  # µs


def throughput(score: Callable[[Any], object], rs: Sequence[Any], size: int = 1000) -> float:
    t0 = time.perf_counter()
    for i in range(0, len(rs), size):
        score(rs[i : i + size])
    return len(rs) / (time.perf_counter() - t0)


def report(
    name: str, score: Callable[[Any], object], one: Sequence[Any], batch: Any, n: int
) -> None:
    latency(score, one, 200)  # warm up
    p50, p99 = np.percentile(latency(score, one, n), [50, 99])
    rate = throughput(score, batch)
    print(
        f"  {name:8s} one row: p50 {p50:7.1f} µs  p99 {p99:7.1f} µs | "
        f"batches of 1000: {rate:>9,.0f} rows/s"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=2000, help="single-row calls timed per model")
    ap.add_argument("--trees", type=int, default=300)
    args = ap.parse_args()
    rs, y, cols, version = rows()
    x = np.array([v for _, v in rs])
    print(f"{len(rs):,} real rows x {len(cols)} features (full set), {args.trees} trees, 1 thread")
    t0 = time.perf_counter()
    forest_kernels.kernels()
    print(
        f"compiled kernel loaded in {time.perf_counter() - t0:.2f} s "
        "(numba's cache; the first run on a machine compiles)"
    )
    xparams = {"objective": "multi:softprob", "num_class": 3, "max_depth": 6, "nthread": 1}
    # 3 classes: a boosting round adds 3 trees. `--trees` trees in all (rounds = trees / 3),
    # and as many rounds as LightGBM's trees (3x the trees)
    xbs = [xgb.train(xparams, xgb.DMatrix(x, y), r) for r in (args.trees // 3, args.trees)]
    lparams = {"objective": "binary", "num_leaves": 31, "num_threads": 1, "verbose": -1}
    lb = lgb.train(lparams, lgb.Dataset(x, (y == 2).astype(int)), args.trees)
    cals = {
        "xgboost": Calibration("platt", (-4.0, -4.0, -4.0), (2.0, 2.0, 2.0)),
        "lightgbm": Calibration("platt", (-4.0,), (2.0,)),
    }
    classes = {"xgboost": (-1, 0, 1), "lightgbm": (0, 1)}
    one_rows = [x[i : i + 1] for i in range(len(x))]
    for kind, booster in (("xgboost", xbs[0]), ("xgboost", xbs[1]), ("lightgbm", lb)):
        stock = (
            (lambda a, b=booster: b.inplace_predict(a, validate_features=False))
            if kind == "xgboost"
            else (lambda a: lb.predict(a, num_threads=1))
        )
        t0 = time.perf_counter()
        forest = flat_forest.from_booster(kind, booster)
        t1 = time.perf_counter()
        forest.check(booster)
        t2 = time.perf_counter()
        spec = ModelSpec(kind, classes[kind], cols, "full", version, cals[kind])  # type: ignore[arg-type]
        m = TreeModel(spec, booster, forest)
        print(
            f"{kind}: {forest.n_trees} trees, {forest.n_nodes:,} nodes; flattened in "
            f"{(t1 - t0) * 1e3:.0f} ms, probe check {(t2 - t1) * 1e3:.0f} ms"
        )
        if not np.array_equal(forest.margin(x), flat_forest.booster_margin(kind, booster, x)):
            raise SystemExit(f"{kind}: the forest's margins differ from the booster's")
        report("stock", stock, one_rows, x, args.rows)
        report("forest", m.raw_proba, one_rows, x, args.rows)
        p = ModelProducer(
            "bench", m, kind, "v1", cols, version, 0, ThresholdDecision(m.spec.classes)
        )
        report("producer", p.score, [[r] for r in rs], rs, args.rows)


if __name__ == "__main__":
    main()

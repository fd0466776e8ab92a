"""`cryptoflow stress` on a real crash window (2022-06-13, Celsius freeze / 3AC; real Binance
1m BTCUSDT + ETHUSDT from ../shared/data): the strategy's numbers equal what its stored run
holds, and buy-and-hold equals one computed here from the raw parquet with plain numpy."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from dataflows.stress import BY_NAME, SHARED_BARS, pick_windows, run_stress, window_source
from infra.clickhouse import connect, query_df
from tests.dataflows.flowkit import sma_config
from tests.paths import SHARED

WINDOW = "3ac-celsius-2022-06-13"
SYMBOLS = ["BTCUSDT", "ETHUSDT"]
FILES = [SHARED / "bars_1m" / f"binance_spot_{s.lower()}_1m_2022.parquet" for s in SYMBOLS]


def test_stress_window_vs_buy_and_hold(ch_dsn: str, ch_db: str, tmp_path: Path) -> None:
    missing = [f for f in FILES if not f.exists()]
    if missing:
        pytest.skip(f"{missing} not present")
    assert SHARED_BARS == SHARED / "bars_1m"  # the module finds the data where tests do
    cfg = sma_config(SYMBOLS, clickhouse={"dsn": ch_dsn, "database": ch_db})
    (row,) = run_stress(cfg, [WINDOW], tmp_path, progress=False)
    assert json.loads((tmp_path / "stress.json").read_text()) == [row]
    assert (
        (tmp_path / "stress.csv")
        .read_text()
        .splitlines()[0]
        .startswith("window,what,start,end,run_id,strategy_return,strategy_max_drawdown,fills")
    )

    # buy-and-hold from the raw files: half the cash per symbol at its first close, fee paid
    t0 = np.datetime64("2022-06-13T00:00", "us")
    t1 = np.datetime64("2022-06-14T00:00", "us")
    fee = cfg.execution.fee_bps / 1e4
    initial = cfg.portfolio.initial_cash
    value = np.zeros(1440)
    for f in FILES:
        df = pl.read_parquet(f).filter(
            (pl.col("open_time") >= pl.lit(t0).dt.replace_time_zone("UTC"))
            & (pl.col("open_time") < pl.lit(t1).dt.replace_time_zone("UTC"))
        )
        close = df.sort("open_time")["close"].to_numpy()
        assert len(close) == 1440  # a whole day, no gap
        value += initial / 2 / (1 + fee) / close[0] * close
    bh_curve = np.concatenate(([initial], value))
    assert row["benchmark_return"] == pytest.approx(value[-1] / initial - 1, rel=1e-12)
    bh_dd = np.max(1 - bh_curve / np.maximum.accumulate(bh_curve))
    assert row["benchmark_max_drawdown"] == pytest.approx(bh_dd, rel=1e-12)
    assert row["benchmark_return"] < -0.10  # the crash is in the window: ~-16% that day

    # the strategy's numbers: what its stored run holds, over exactly that day
    client = connect(ch_dsn, ch_db)
    eq = query_df(
        client,
        f"SELECT toUnixTimestamp64Nano(ts_event) AS ts, equity FROM `{ch_db}`.equity FINAL "
        "WHERE run_id = %(r)s ORDER BY ts",
        {"r": row["run_id"]},
    )
    ts, curve = eq["ts"].to_numpy(), eq["equity"].to_numpy()
    assert len(ts) == 1440 and ts[0] == 1655078460 * 10**9  # 2022-06-13 00:01 UTC: first close
    assert row["strategy_return"] == pytest.approx(curve[-1] / initial - 1, rel=1e-12)
    full = np.concatenate(([initial], curve))
    dd = np.max(1 - full / np.maximum.accumulate(full))
    assert row["strategy_max_drawdown"] == pytest.approx(dd, rel=1e-12)
    n = query_df(
        client,
        f"SELECT count() AS n FROM `{ch_db}`.fills FINAL WHERE run_id = %(r)s",
        {"r": row["run_id"]},
    )["n"][0]
    assert row["fills"] == n > 0
    assert row["strategy_return"] != row["benchmark_return"]


def test_bad_requests_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"--window nope: unknown; the stress windows are .*ftx"):
        pick_windows(["nope"])
    assert [w.name for w in pick_windows(None)] == list(BY_NAME)
    w = BY_NAME["ftx-2022-11"]
    assert (w.start, w.end) == ("2022-11-08", "2022-11-11")
    btc = re.escape(str(tmp_path / "binance_spot_btcusdt_1m_2022.parquet"))
    with pytest.raises(FileNotFoundError, match=btc):
        window_source(w, ["BTCUSDT"], tmp_path)
    (tmp_path / "binance_spot_btcusdt_1m_2022.parquet").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=re.escape("binance_spot_solusdt_1m_2022.parquet")):
        window_source(w, ["BTCUSDT", "SOLUSDT"], tmp_path)
    assert window_source(w, ["BTCUSDT"], tmp_path) == (
        f"file:{tmp_path}/binance_spot_*usdt_1m_2022.parquet"
    )

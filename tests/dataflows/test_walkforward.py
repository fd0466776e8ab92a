"""`backtest --walk-forward` on real Binance 1m bars (BTCUSDT + ETHUSDT, January 2024, the
`core` set), real chDB, tiny XGBoost models: one version per window in the run's registry, each
trained only before its own test window; every bar of a window scored by that window's version
with the probabilities the offline model gives the training set's row (exact floats); nothing
scored before the first window; the out-of-sample curve and per-window statistics recomputed
independently from the stored equity; a rerun is the same run; bad requests say what to fix."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from dataflows.backtest import BacktestSpec, parse_time
from dataflows.cli import main
from dataflows.walkforward import WalkForwardResult, run_walk_forward, target_column
from infra.clickhouse import connect, query_df
from offline import registry
from operators.performance import summarize
from schemas.config import Config
from schemas.producer_config import TrainConfig
from tests.dataflows.flowkit import sma_config
from tests.paths import BARS_2024_01

SYMBOLS = ("BTCUSDT", "ETHUSDT")
WF = "train=7d,test=4d"
DAY = 86400 * 10**9
TRAIN = {"kind": "xgboost", "label": "threshold:h=10,thr=0.002", "n_estimators": 15}


def wf_config(ch_dsn: str, ch_db: str, **producer: Any) -> Config:
    prod = {
        "name": "xgb",
        "kind": "model",
        "model": "xgb-wf",
        "decision": {"long": 0.3, "short": 0.3},
        "train": TRAIN,
        **producer,
    }
    return sma_config(
        list(SYMBOLS),
        features={"set": "core", "store": False},
        producers=[prod],
        strategy={"producer": "xgb", "long_only": True},
        sizing={"mode": "fraction", "fraction": 0.04},
        clickhouse={"dsn": ch_dsn, "database": ch_db},
    )


def spec() -> BacktestSpec:
    return BacktestSpec(
        f"file:{BARS_2024_01}",
        SYMBOLS,
        start_ns=parse_time("2024-01-01"),
        end_ns=parse_time("2024-01-27"),
    )


@pytest.fixture(scope="module")
def wf_db(ch_dsn: str) -> str:
    return f"test_wf_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def run(
    tmp_path_factory: pytest.TempPathFactory, ch_dsn: str, wf_db: str
) -> tuple[WalkForwardResult, Path, Config]:
    out = tmp_path_factory.mktemp("wf") / "out"
    cfg = wf_config(ch_dsn, wf_db)
    return run_walk_forward(cfg, spec(), out, WF, "1h", progress=False), out, cfg


def _iso_ns(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp()) * 10**9


def test_one_version_per_window_trained_before_it(run: Any) -> None:
    res, out, _ = run
    versions = registry.versions(res.registry, "xgb-wf")
    assert len(res.windows) >= 3
    assert [mv.version for mv in versions] == [w["version"] for w in res.windows]
    for w, mv in zip(res.windows, versions, strict=True):
        tw = mv.meta["training_window"]
        assert _iso_ns(tw["end"]) == w["active_start_ns"] == _iso_ns(w["test_start"])
        assert _iso_ns(tw["end"]) - _iso_ns(tw["start"]) == 7 * DAY
        assert mv.meta["folds"][0]["rows"]["purged"] > 0  # labels reaching the test window
    starts = [w["active_start_ns"] for w in res.windows]
    assert np.all(np.diff(starts) == 4 * DAY)
    assert res.registry == (out / "registry").resolve()


def test_each_window_scored_by_its_version_exactly(run: Any) -> None:
    res, _, cfg = run
    ch = cfg.clickhouse
    preds = query_df(
        connect(ch.dsn, ch.database),
        f"SELECT symbol, toUnixTimestamp64Nano(ts_event) AS t, model_version, proba "
        f"FROM {ch.database}.predictions FINAL WHERE run_id = '{res.run_id}' AND producer = 'xgb'",
    )
    assert preds.height > 0
    ds = pl.read_parquet(res.dataset)
    bounds = [w["active_start_ns"] for w in res.windows] + [res.windows[-1]["active_end_ns"]]
    total = 0
    for k, w in enumerate(res.windows):
        model = registry.resolve(res.registry, "xgb-wf", w["version"]).load()
        cols = list(model.spec.feature_columns)
        for sym in SYMBOLS:
            rows = ds.filter(
                (pl.col("symbol") == sym)
                & (pl.col("ts_event").dt.epoch("ns") >= bounds[k])
                & (pl.col("ts_event").dt.epoch("ns") < bounds[k + 1])
            ).sort("ts_event")
            want = model.predict_proba(rows.select(pl.col(cols).cast(pl.Float64)).to_numpy())
            got = preds.filter(
                (pl.col("symbol") == sym)
                & (pl.col("t") > bounds[k])  # a prediction is stamped at its bar's close
                & (pl.col("t") <= bounds[k + 1])
            ).sort("t")
            assert got["model_version"].unique().to_list() == [w["version"]]
            assert np.array_equal(np.array(got["proba"].to_list()), want)
            total += got.height
    assert total == preds.height  # nothing scored before the first window or after the last


def test_out_of_sample_curve_and_windows_recomputed(run: Any) -> None:
    res, out, cfg = run
    eq = pl.read_csv(out / "equity.csv")
    ts, e = eq["ts_event"].to_numpy(), eq["equity"].to_numpy()
    first = res.windows[0]["active_start_ns"]
    cash = cfg.portfolio.initial_cash
    assert np.all(e[ts < first] == cash)  # no trading while the first model trains
    fills = json.loads((out / "walk_forward.json").read_text())
    m = ts >= first
    want = summarize(ts[m], e[m], [], cash)
    assert res.summary.final_equity == want.final_equity
    assert res.summary.max_drawdown == pytest.approx(want.max_drawdown, abs=0)
    growth = np.prod([1 + w["trading"]["total_return"] for w in res.windows])
    assert growth == pytest.approx(1 + res.summary.total_return, rel=1e-12)
    assert res.summary.n_trades == sum(w["trading"]["n_trades"] for w in res.windows) > 0
    assert len(fills["windows"]) == len(res.windows)
    assert (out / "walk_forward.png").stat().st_size > 10_000
    assert len((out / "walk_forward.csv").read_text().splitlines()) == len(res.windows) + 1


def test_rerun_is_the_same_run(run: Any, ch_dsn: str, wf_db: str) -> None:
    res, out, _ = run
    again = run_walk_forward(
        wf_config(ch_dsn, wf_db), spec(), out, WF, "1h", dataset=res.dataset, progress=False
    )
    assert again.run_id == res.run_id
    assert again.summary == res.summary


def test_target_column_per_label_family() -> None:
    t = TrainConfig.model_validate
    assert target_column(t(TRAIN)) == "label_thr_10_0p002"
    tb = "triple_barrier:pt=0.004,sl=0.004,h=60,binary=1"
    assert target_column(t({"kind": "lightgbm", "label": tb})) == "tb_0p004_0p004_60_binary"
    assert target_column(t({"kind": "xgboost", "label": tb})) == "tb_0p004_0p004_60_label"
    with pytest.raises(ValueError, match="no class label"):
        target_column(t({"kind": "xgboost", "label": "forward:h=5"}))


def test_bad_requests_say_what_to_fix(
    tmp_path: Path, ch_dsn: str, ch_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rule = sma_config(list(SYMBOLS), clickhouse={"dsn": ch_dsn, "database": ch_db})
    with pytest.raises(ValueError, match=r"set \[strategy\] producer"):
        run_walk_forward(rule, spec(), tmp_path, WF)
    with pytest.raises(ValueError, match=r"no \[producers.train\] table"):
        run_walk_forward(wf_config(ch_dsn, ch_db, train=None), spec(), tmp_path, WF)
    for wf, emb in (("train=7d", "0"), ("train=7d,test=4x", "0"), (WF, "soon")):
        with pytest.raises(ValueError, match=r"walk-forward|embargo"):
            run_walk_forward(wf_config(ch_dsn, ch_db), spec(), tmp_path / "bad", wf, emb)
    assert not (tmp_path / "bad" / "dataset.parquet").exists()  # refused before any replay
    short = BacktestSpec(spec().source, SYMBOLS, parse_time("2024-01-01"), parse_time("2024-01-06"))
    with pytest.raises(ValueError, match="no test window fits"):
        run_walk_forward(wf_config(ch_dsn, ch_db), short, tmp_path / "s", WF, progress=False)
    with pytest.raises(ValueError, match="feature set version"):
        other = sma_config(list(SYMBOLS), features={"set": "full"})
        run_walk_forward(
            wf_config(ch_dsn, ch_db, model="x"),
            spec(),
            tmp_path,
            WF,
            dataset=_dataset_of(other, tmp_path),
        )
    argv = ["backtest", "--source", f"file:{BARS_2024_01}", "--walk-forward", WF]
    capsys.readouterr()
    assert main(argv) == 2
    assert "--walk-forward needs --out DIR" in capsys.readouterr().err
    assert main([*argv[:3], "--embargo", "1h"]) == 2
    assert "--embargo belong to --walk-forward" in capsys.readouterr().err


def _dataset_of(cfg: Config, tmp: Path) -> Path:
    from offline.dataset import DatasetSpec, build_dataset

    out = tmp / "full.parquet"
    s = DatasetSpec(
        spec().source,
        ("BTCUSDT",),
        cfg.features.set,
        ("threshold:h=10,thr=0.002",),
        out,
        parse_time("2024-01-01"),
        parse_time("2024-01-02"),
        store=False,
    )
    build_dataset(cfg, s, progress=False)
    return out

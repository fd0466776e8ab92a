"""Models in the stream, on real Binance bars: a training set built by replay, an XGBoost
3-class and a LightGBM binary model trained on it and registered, then the trading flow with
both as `[[producers]]`. The probabilities the flow emits equal the offline `predict_proba` on the
same dataset rows exactly, on one and two workers; a model trained on another feature set
version is refused at start, naming both versions."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl
import pytest
import xgboost as xgb

from dataflows.backtest import BacktestSpec, parse_time, run_id_for
from dataflows.producers import PromotionWatch, model_fingerprints, pin_models, strategy_factory
from offline import registry
from offline.dataset import DatasetSpec, build_dataset, read_metadata
from operators.features import feature_set
from operators.models.tree import Calibration, ModelSpec, TreeModel
from schemas.config import Config
from schemas.messages import Bar, Order, Prediction, Signal
from tests.dataflows.flowkit import batches, run_flow, sma_config
from tests.operators.opdata import real_bars
from tests.paths import BARS_2024_01

SYMBOLS = ("BTCUSDT", "ETHUSDT")
START, END = parse_time("2024-01-02"), parse_time("2024-01-05")
THR = "label_thr_10_0p002"
TB = "tb_0p004_0p004_60_binary"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A dataset of 3 days x 2 symbols (core set) and two registered models trained on it."""
    tmp = tmp_path_factory.mktemp("models")
    cfg = sma_config(list(SYMBOLS))
    spec = DatasetSpec(
        f"file:{BARS_2024_01}",
        SYMBOLS,
        "core",
        ("threshold:h=10,thr=0.002", "triple_barrier:pt=0.004,sl=0.004,h=60,binary=1"),
        tmp / "ds.parquet",
        START,
        END,
        store=False,
    )
    res = build_dataset(cfg, spec, progress=False)
    frame = pl.read_parquet(res.path)
    meta = read_metadata(res.path)
    cols = tuple(meta["feature_columns"])
    train = frame.filter(~pl.col("warmup") & pl.col(THR).is_not_null() & pl.col(TB).is_not_null())
    x = train.select(cols).to_numpy()
    root = tmp / "registry"
    common = {"feature_set": meta["feature_set"], "feature_version": meta["feature_version"]}

    y3 = train[THR].to_numpy() + 1  # {-1, 0, 1} -> {0, 1, 2}
    params = {"objective": "multi:softprob", "num_class": 3, "max_depth": 3, "nthread": 1}
    booster = xgb.train(params, xgb.DMatrix(x, y3), 20)
    xmodel = TreeModel(ModelSpec("xgboost", (-1, 0, 1), cols, **common), booster)
    registry.register(root, "xgb-trend", xmodel, {"label": THR, "horizon": 10})

    yb = train[TB].to_numpy()
    lparams = {"objective": "binary", "num_leaves": 7, "num_threads": 1, "verbose": -1}
    lbooster = lgb.train(lparams, lgb.Dataset(x, yb), 20)
    platt = Calibration("platt", a=(-3.0,), b=(1.5,))  # fixed numbers: the path, not the fit
    lmodel = TreeModel(ModelSpec("lightgbm", (0, 1), cols, calibration=platt, **common), lbooster)
    registry.register(root, "lgb-tb", lmodel, {"label": TB, "horizon": 60})
    registry.promote(root, "lgb-tb", "v1")
    return {"frame": frame, "cols": cols, "root": root, "xgb": xmodel, "lgb": lmodel}


def model_config(root: Path, models: dict[str, Any] | None = None, **over: Any) -> Config:
    producers = [
        {"name": "xgb", "kind": "model", "model": "xgb-trend", "version": "v1"},
        {"name": "lgb", "kind": "model", "model": "lgb-tb", "decision": {"long": 0.6}},
    ]
    return sma_config(
        list(SYMBOLS),
        producers=producers,
        models=models or {"registry": str(root)},
        strategy={"producer": "xgb"},
        **over,
    )


def bars_between(start: int, end: int) -> list[Bar]:
    out = [b for s in SYMBOLS for b in real_bars(s) if start <= b.ts_event < end]
    return sorted(out, key=lambda b: (b.ts_event, b.symbol))


@pytest.mark.parametrize("workers", [1, 2])
def test_stream_probabilities_equal_offline_predict(trained: dict[str, Any], workers: int) -> None:
    cfg = model_config(trained["root"])
    events = run_flow(cfg, batches(bars_between(START, END), 700), kind="bars", workers=workers)
    preds = [e for e in events if type(e) is Prediction]
    frame: pl.DataFrame = trained["frame"]
    for producer, model in (("xgb", trained["xgb"]), ("lgb", trained["lgb"])):
        mine = {(p.symbol, p.ts_event): p for p in preds if p.producer == producer}
        rows = frame.filter(~pl.col("warmup"))
        keys = list(
            zip(
                rows["symbol"].to_list(),
                (rows["ts_event"].dt.epoch("ns") + 60 * 10**9).to_list(),  # bar close
                strict=True,
            )
        )
        assert sorted(mine) == sorted(keys), f"{producer}: one prediction per warm bar"
        offline = model.predict_proba(rows.select(trained["cols"]).to_numpy())
        stream = np.array([mine[k].proba for k in keys])
        np.testing.assert_array_equal(stream, offline)  # same floats, not close ones
        assert {p.model_version for p in mine.values()} == {"v1"}
    # the trading producer's signals carry the model and reach the account
    sigs = [e for e in events if type(e) is Signal and e.strategy == "xgb"]
    assert sigs and all(s.model == "xgb-trend" and len(s.proba) == 3 for s in sigs)
    for sym in SYMBOLS:  # emitted on a change of direction only
        mine = [s.direction for s in sigs if s.symbol == sym]
        assert all(a != b for a, b in itertools.pairwise(mine))
    orders = [e for e in events if type(e) is Order]
    assert orders, "the xgb producer's signals traded"


def test_batches_do_not_change_results(trained: dict[str, Any]) -> None:
    cfg = model_config(trained["root"])
    bars = bars_between(START, START + 86_400 * 10**9)
    one = [e for e in run_flow(cfg, batches(bars, 1), kind="bars") if type(e) is Prediction]
    big = [e for e in run_flow(cfg, batches(bars, 5000), kind="bars") if type(e) is Prediction]

    # symbols and producers interleave as batches happen to meet (ADR 0009); each (symbol,
    # producer)'s own stream is fixed
    def per_stream(ps: list[Prediction]) -> dict[tuple[str, str], list[Prediction]]:
        out: dict[tuple[str, str], list[Prediction]] = {}
        for p in ps:
            out.setdefault((p.symbol, p.producer), []).append(p)
        return out

    streams = per_stream(one)
    assert streams == per_stream(big) and len(one) > 1000
    assert sorted(streams) == [(s, p) for s in sorted(SYMBOLS) for p in ("lgb", "xgb")]


def test_model_of_another_feature_set_version_is_refused(trained: dict[str, Any]) -> None:
    cfg = model_config(trained["root"], features={"set": "tcn12"})
    want = feature_set("tcn12").version
    have = trained["xgb"].spec.feature_version
    with pytest.raises(ValueError, match=f"version {have}.*version {want}"):
        run_flow(cfg, batches(bars_between(START, START + 10**12), 100), kind="bars")


def test_unknown_model_and_unpromoted_version_fail_at_start(trained: dict[str, Any]) -> None:
    root = trained["root"]
    cfg = sma_config(
        list(SYMBOLS),
        producers=[{"name": "m", "kind": "model", "model": "nope"}],
        models={"registry": str(root)},
    )
    with pytest.raises(ValueError, match="nope"):
        run_flow(cfg, batches(bars_between(START, START + 10**12), 100), kind="bars")
    cfg = sma_config(
        list(SYMBOLS),
        producers=[{"name": "m", "kind": "model", "model": "xgb-trend"}],  # never promoted
        models={"registry": str(root)},
    )
    with pytest.raises(ValueError, match="promote"):
        run_flow(cfg, batches(bars_between(START, START + 10**12), 100), kind="bars")


class Clock:
    def __init__(self) -> None:
        self.now = 10**18

    def __call__(self) -> int:
        return self.now


def test_promotion_is_picked_up_at_the_next_batch_live(
    trained: dict[str, Any], tmp_path: Path
) -> None:
    root = tmp_path / "registry"
    shutil.copytree(trained["root"], root)
    cfg = model_config(root, models={"registry": str(root), "reload_s": 5.0})
    fs = feature_set("core")
    st = strategy_factory(cfg, fs)("BTCUSDT")
    lgb_p = next(p for p in st.producers if p.name == "lgb")
    xgb_p = next(p for p in st.producers if p.name == "xgb")
    clock = Clock()
    watch = PromotionWatch(cfg, fs, clock)
    watch(st)
    assert lgb_p.model_version == "v1"  # type: ignore[attr-defined]
    v2 = registry.register(root, "lgb-tb", trained["lgb"], {"label": TB, "horizon": 60})
    registry.promote(root, "lgb-tb", v2.version)
    clock.now += 10**9
    watch(st)
    assert lgb_p.model_version == "v1", "checked at most every reload_s"  # type: ignore[attr-defined]
    clock.now += 5 * 10**9
    watch(st)
    assert lgb_p.model_version == "v2"  # type: ignore[attr-defined]
    assert xgb_p.model_version == "v1", "a pinned version never moves"  # type: ignore[attr-defined]
    # a promoted model the running features cannot feed: refused, v2 keeps trading
    other = TreeModel(
        ModelSpec("lightgbm", (0, 1), trained["cols"], "core", "0000beef"),
        trained["lgb"].booster,
    )
    v3 = registry.register(root, "lgb-tb", other, {"label": TB})
    registry.promote(root, "lgb-tb", v3.version)
    clock.now += 6 * 10**9
    watch(st)
    assert lgb_p.model_version == "v2"  # type: ignore[attr-defined]


def test_backtest_pins_the_promoted_version(trained: dict[str, Any], tmp_path: Path) -> None:
    root = tmp_path / "registry"
    shutil.copytree(trained["root"], root)
    cfg = model_config(root, models={"registry": str(root)})
    spec = BacktestSpec(f"file:{BARS_2024_01}", SYMBOLS, start_ns=START, end_ns=END)
    pinned = pin_models(cfg)
    assert [p.version for p in pinned.producers] == ["v1", "v1"]  # xgb v1, lgb promoted -> v1
    v2 = registry.register(root, "lgb-tb", trained["lgb"], {"label": TB})
    registry.promote(root, "lgb-tb", v2.version)
    again = pin_models(cfg)
    assert [p.version for p in again.producers] == ["v1", "v2"]
    assert run_id_for(spec, pinned) != run_id_for(spec, again)
    # The same version names at the same path, other bytes (a registry rebuilt, or another
    # one given by $CRYPTOFLOW_REGISTRY): the config cannot tell, the model files' sha256 can.
    prints = model_fingerprints(pinned)
    assert set(prints) == {"xgb", "lgb"} and all(len(v) == 64 for v in prints.values())
    shutil.rmtree(root / "lgb-tb")
    mine = registry.register(root, "lgb-tb", trained["xgb"], {"label": TB})  # other bytes, v1
    registry.promote(root, "lgb-tb", mine.version)
    rebuilt = pin_models(cfg)
    assert rebuilt.trading_json() == pinned.trading_json()
    theirs = model_fingerprints(rebuilt)
    assert theirs["lgb"] != prints["lgb"] and theirs["xgb"] == prints["xgb"]
    assert run_id_for(spec, pinned, prints) != run_id_for(spec, rebuilt, theirs)


def test_a_model_that_never_trades_says_how_close_it_came(
    trained: dict[str, Any], ch_dsn: str, ch_db: str, tmp_path: Path
) -> None:
    """A backtest whose model never reaches its threshold warns with the highest probability
    of each class beside the thresholds, not a bare 'no trades'."""
    import json

    from dataflows.backtest import run_backtest

    cfg = sma_config(
        list(SYMBOLS),
        producers=[{"name": "lgb", "kind": "model", "model": "lgb-tb", "decision": {"long": 0.99}}],
        models={"registry": str(trained["root"])},
        strategy={"producer": "lgb"},
        clickhouse={"dsn": ch_dsn, "database": ch_db},
    )
    assert START is not None and END is not None
    spec = BacktestSpec(f"file:{BARS_2024_01}", SYMBOLS, START, END)
    _, summary = run_backtest(cfg, spec, tmp_path / "out", progress=False)
    rows = trained["frame"].filter(~pl.col("warmup"))
    proba = trained["lgb"].predict_proba(rows.select(trained["cols"]).to_numpy())
    assert summary.n_trades == 0 and proba[:, 1].max() < 0.99
    (warning,) = json.loads((tmp_path / "out" / "summary.json").read_text())["warnings"]
    assert warning.startswith("the run made no trades: its trading producer lgb emitted ")
    assert warning.endswith(
        f"; over {len(rows):,} scored bars the highest were p(0) {proba[:, 0].max():.3f}, "
        f"p(1) {proba[:, 1].max():.3f}, against the decision's long 0.99 / short 0.55"
    )


def test_a_backtest_on_the_models_own_training_bars_is_called_in_sample(
    trained: dict[str, Any], ch_dsn: str, ch_db: str, tmp_path: Path
) -> None:
    """The same model registered with the training window its metadata would carry: a replay
    over those bars warns (days and share of the run), one after them does not. Its short-only
    signals on a spot account are explained too."""
    import json

    from dataflows.backtest import run_backtest
    from dataflows.producers import in_sample_warnings

    root = tmp_path / "registry"
    window = {"start": "2024-01-03T00:00:00Z", "end": "2024-01-04T12:00:00Z"}
    registry.register(root, "lgb-tb", trained["lgb"], {"label": TB, "training_window": window})
    cfg = sma_config(
        list(SYMBOLS),
        producers=[
            {
                "name": "lgb",
                "kind": "model",
                "model": "lgb-tb",
                "version": "v1",
                "decision": {"long": 0.999, "short": 0.001},
            },
        ],
        models={"registry": str(root)},
        strategy={"producer": "lgb"},
        clickhouse={"dsn": ch_dsn, "database": ch_db},
    )
    assert START is not None and END is not None
    spec = BacktestSpec(f"file:{BARS_2024_01}", SYMBOLS, START, END)
    run_backtest(cfg, spec, tmp_path / "out", progress=False)
    warnings = json.loads((tmp_path / "out" / "summary.json").read_text())["warnings"]
    (said,) = [w for w in warnings if "in sample" in w]
    assert said.startswith(
        "producer lgb: model lgb-tb v1 was trained on bars from 2024-01-03T00:00:00Z to "
        "2024-01-04T12:00:00Z, and this replay covers 1.5 days of them (50% of the run)"
    )
    (quiet,) = [w for w in warnings if w.startswith("the run made no trades")]
    assert "none long, and a spot account does not short" in quiet
    day = 86_400 * 10**9
    assert in_sample_warnings(cfg, parse_time("2024-01-05"), parse_time("2024-01-06")) == []
    assert in_sample_warnings(cfg, START - 3 * day, START) == []
    assert len(in_sample_warnings(cfg, START, START + 2 * day)) == 1

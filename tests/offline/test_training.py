"""`offline/training` and `cryptoflow offline train` on a real training set (Binance 1m bars,
BTCUSDT + ETHUSDT, January 2024, feature set "core"), no mocks: time windows never train on their
own test window, fit/valid/calib are ordered, disjoint and purged, two runs give the same model
bytes and metrics, calibrated probabilities sum to 1, both model kinds run end to end, bad
requests fail with messages that say what to fix, and the CLI registers the final model."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dataflows.backtest import parse_time
from dataflows.cli import main
from dataflows.cli_train import default_name
from offline.dataset import DatasetSpec, build_dataset
from offline.splits import block_window
from offline.training import parse_duration, parse_walk_forward, train
from offline.training.run import TrainResult, iso, load
from offline.training.walkforward import fold_rows, in_range, inner_split, windows
from operators.models.tree import TreeModel
from tests.dataflows.flowkit import sma_config
from tests.paths import BARS_2024_01

THR = "label_thr_10_0p002"
TB = "tb_0p004_0p004_60_binary"
WF = "train=8d,test=3d,step=3d"
EMBARGO = "1h"
DAY = 86400 * 10**9
FAST: dict[str, Any] = {"n_estimators": 20, "progress": False}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("training") / "jan.parquet"
    start, end = parse_time("2024-01-01"), parse_time("2024-02-01")
    assert start is not None and end is not None
    labels = ("threshold:h=10,thr=0.002", "triple_barrier:pt=0.004,sl=0.004,h=60,binary=1")
    spec = DatasetSpec(
        f"file:{BARS_2024_01}", ("BTCUSDT", "ETHUSDT"), "core", labels, out, start, end, store=False
    )
    build_dataset(sma_config(["BTCUSDT", "ETHUSDT"]), spec, progress=False)
    return out


@pytest.fixture(scope="module")
def xgb_result(dataset: Path) -> TrainResult:
    t0 = time.perf_counter()
    res = train(dataset, "xgboost", THR, WF, EMBARGO, **FAST)
    print(f"xgboost: {len(res.folds)} folds in {time.perf_counter() - t0:.2f} s, {res.timings}")
    return res


def _model_bytes(model: TreeModel, folder: Path) -> dict[str, bytes]:
    model.save(folder)
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _no_seconds(folds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in f.items() if k != "seconds"} for f in folds]


def _sklearn_calibrated(res: TrainResult, data: Any, x: np.ndarray) -> np.ndarray:
    """The final model's raw probabilities on `x` calibrated by scikit-learn's own calibrators,
    fitted on the raw probabilities of the final window's calibration slice."""
    from sklearn.calibration import _SigmoidCalibration  # type: ignore[import-untyped]
    from sklearn.isotonic import IsotonicRegression  # type: ignore[import-untyped]

    t_end = int(data.ts[-1]) + 1
    start = t_end - parse_walk_forward(WF).train_ns
    rows = in_range(data.ts, start, t_end)
    calib = inner_split(data.ts, data.end_ts, rows, start, t_end, parse_duration(EMBARGO)).calib
    model = res.model
    raw_c, raw = model.raw_proba(data.x[calib]), model.raw_proba(x)
    k = raw.shape[1]
    want = raw.copy()
    for c in [1] if k == 2 else range(k):
        target = data.y[calib] == c
        if model.spec.calibration.method == "platt":
            want[:, c] = _SigmoidCalibration().fit(raw_c[:, c], target).predict(raw[:, c])
        elif model.spec.calibration.method == "isotonic":
            iso = IsotonicRegression(out_of_bounds="clip").fit(raw_c[:, c], target)
            want[:, c] = iso.predict(raw[:, c])
    if k == 2:
        want[:, 0] = 1.0 - want[:, 1]
    elif model.spec.calibration.method != "none":
        want /= want.sum(axis=1, keepdims=True)
    return want


# --------------------------------------------------------------------------- parsing


def test_parse_walk_forward_and_duration() -> None:
    wf = parse_walk_forward("train=180d,test=30d,step=30d")
    assert (wf.train_ns, wf.test_ns, wf.step_ns) == (180 * DAY, 30 * DAY, 30 * DAY)
    assert parse_walk_forward("test=12h,train=90m").step_ns == 12 * 3600 * 10**9
    assert parse_duration("1h") == 3600 * 10**9
    assert parse_duration("1.5d") == 36 * 3600 * 10**9
    assert parse_duration("0") == 0
    for bad, msg in [
        ("train=180d", "test= is missing"),
        ("train=180d,test=30x", "unit m|h|d"),
        ("train=180d,test=30d,foo=1d", "unknown key 'foo'"),
        ("train=180d,test=30d,test=1d", "test given twice"),
        ("train=180d,test", "bad item 'test'"),
        ("train=0d,test=1d", "train must be > 0"),
    ]:
        with pytest.raises(ValueError, match=msg):
            parse_walk_forward(bad)
    with pytest.raises(ValueError, match="embargo '1 hour'"):
        parse_duration("1 hour", "embargo")


# --------------------------------------------------------------------------- the windows


@pytest.mark.parametrize("label", [THR, TB])
def test_folds_never_train_on_their_test_window(dataset: Path, label: str) -> None:
    kind = "xgboost" if label == THR else "lightgbm"
    data = load(dataset, kind, label, None)
    emb = parse_duration(EMBARGO)
    ts, end = data.ts, data.end_ts
    assert np.all(np.diff(ts) >= 0) and len(set(data.symbol)) == 2
    wins = windows(int(ts[0]), int(ts[-1]) + 1, parse_walk_forward(WF))
    assert len(wins) == 7  # 31 days - 8 train -> 7 full 3-day test windows
    for w in wins:
        assert w.test_start == int(ts[0]) + 8 * DAY + 3 * DAY * w.fold
        rows = fold_rows(ts, end, w, emb)
        test_start, test_end = block_window(ts, end, rows.test)
        assert test_start >= w.test_start and ts[rows.test].max() < w.test_end
        tr = rows.train
        assert ts[tr].min() >= w.train_start
        assert end[tr].max() < test_start  # purged: no label reaches into the test window
        assert not np.any((ts[tr] > test_end) & (ts[tr] <= test_end + emb))  # embargo
        # the purge dropped exactly the candidates whose labels end in the test window
        cand = in_range(ts, w.train_start, w.test_start)
        assert np.array_equal(np.setdiff1d(cand, tr), cand[end[cand] >= test_start])
        s = inner_split(ts, end, tr, w.train_start, w.test_start, emb)
        fit, valid, calib = s.fit, s.valid, s.calib
        assert not (set(fit) & set(valid) or set(fit) & set(calib) or set(valid) & set(calib))
        assert ts[fit].max() < ts[valid].min() and ts[valid].max() < ts[calib].min()
        assert end[fit].max() < ts[valid].min()  # fit purged against validation
        assert end[valid].max() < ts[calib].min()  # validation purged against calibration
        assert end[calib].max() < w.test_start
        span = w.test_start - w.train_start
        _, v0, c0, _ = s.bounds
        assert (v0 - w.train_start, c0 - w.train_start) == (int(span * 0.7), int(span * 0.85))


def test_fold_records_match_the_windows(dataset: Path, xgb_result: TrainResult) -> None:
    res = xgb_result
    data = load(dataset, "xgboost", THR, None)
    emb = parse_duration(EMBARGO)
    wins = windows(int(data.ts[0]), int(data.ts[-1]) + 1, parse_walk_forward(WF))
    assert [f["fold"] for f in res.folds] == list(range(len(wins)))
    for f, w in zip(res.folds, wins, strict=True):
        rows = fold_rows(data.ts, data.end_ts, w, emb)
        s = inner_split(data.ts, data.end_ts, rows.train, w.train_start, w.test_start, emb)
        sizes = {"fit": s.fit.size, "valid": s.valid.size, "calib": s.calib.size}
        assert {k: f["rows"][k] for k in sizes} == sizes
        assert f["rows"]["test"] == rows.test.size
        # a 10-bar label: 10 rows per symbol dropped at each of the three boundaries
        assert f["rows"]["purged"] == 3 * 10 * 2
        assert (f["test_start"], f["test_end"]) == (iso(w.test_start), iso(w.test_end))
        assert f["train_start"] < f["valid_start"] < f["calib_start"] < f["test_start"]
        assert 0 <= f["best_iteration"] < 20
        assert sum(f["class_balance"]["test"].values()) == pytest.approx(1.0)
        assert set(f["metrics"]) >= {"accuracy", "log_loss", "auc", "brier", "ece", "sharpe"}
        assert f["seconds"] > 0
    assert res.summary["log_loss"] == pytest.approx(
        np.mean([f["metrics"]["log_loss"] for f in res.folds])
    )
    # the final model: the last 8 days of usable data
    assert res.training_window["end"] == iso(int(data.ts[-1]) + 1)
    assert res.training_window["start"] == iso(int(data.ts[-1]) + 1 - 8 * DAY)
    assert res.horizon == 10 and res.classes == (-1, 0, 1)
    assert res.rows == data.ts.size and res.data_fingerprint == data.fingerprint


# --------------------------------------------------------------------------- models


def test_xgboost_is_deterministic_and_calibrated(
    dataset: Path, xgb_result: TrainResult, tmp_path: Path
) -> None:
    again = train(dataset, "xgboost", THR, WF, EMBARGO, **FAST)
    a = _model_bytes(xgb_result.model, tmp_path / "a")
    b = _model_bytes(again.model, tmp_path / "b")
    assert set(a) == {"model.ubj", "model.json"} and a == b
    assert _no_seconds(xgb_result.folds) == _no_seconds(again.folds)
    assert xgb_result.importance == again.importance
    assert xgb_result.data_fingerprint == again.data_fingerprint
    model = xgb_result.model
    spec = model.spec
    assert spec.kind == "xgboost" and spec.classes == (-1, 0, 1)
    assert spec.feature_set == "core" and len(spec.feature_version) > 0
    assert spec.calibration.method == "platt" and len(spec.calibration.a) == 3
    data = load(dataset, "xgboost", THR, None)
    p = model.predict_proba(data.x[:2000])
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
    assert not np.allclose(p, model.raw_proba(data.x[:2000]))
    # the stored Platt numbers, applied by TreeModel, are scikit-learn's calibrators
    np.testing.assert_allclose(p, _sklearn_calibrated(xgb_result, data, data.x[:2000]), 0, 1e-12)
    # a registry round trip scores the same
    loaded = TreeModel.load(tmp_path / "a")
    np.testing.assert_array_equal(loaded.predict_proba(data.x[:2000]), p)
    gain = xgb_result.importance["gain"]
    assert list(gain) == list(spec.feature_columns) and sum(gain.values()) == pytest.approx(1.0)
    assert set(xgb_result.importance["permutation"]) == set(spec.feature_columns)


@pytest.mark.parametrize("calibration", ["isotonic", "none"])
def test_lightgbm_binary_end_to_end(dataset: Path, tmp_path: Path, calibration: str) -> None:
    kw = {**FAST, "features": ["rsi_14", "log_returns_1", "realized_vol_20"]}
    t0 = time.perf_counter()
    res = train(dataset, "lightgbm", TB, WF, EMBARGO, calibration=calibration, **kw)
    print(f"lightgbm: {len(res.folds)} folds in {time.perf_counter() - t0:.2f} s")
    again = train(dataset, "lightgbm", TB, WF, EMBARGO, calibration=calibration, **kw)
    assert _model_bytes(res.model, tmp_path / "a") == _model_bytes(again.model, tmp_path / "b")
    assert _no_seconds(res.folds) == _no_seconds(again.folds)
    spec = res.model.spec
    assert spec.kind == "lightgbm" and spec.classes == (0, 1)
    assert spec.feature_columns == ("rsi_14", "log_returns_1", "realized_vol_20")
    assert spec.calibration.method == calibration
    assert res.horizon == 60 and len(res.folds) == 7
    data = load(dataset, "lightgbm", TB, kw["features"])
    p = res.model.predict_proba(data.x[:2000])
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
    assert np.all((p >= 0) & (p <= 1))
    np.testing.assert_allclose(p, _sklearn_calibrated(res, data, data.x[:2000]), 0, 1e-12)
    for f in res.folds:
        assert 0.0 <= f["metrics"]["auc"] <= 1.0 and f["metrics"]["brier"] < 0.5


# --------------------------------------------------------------------------- errors


def test_errors_say_what_to_fix(dataset: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown label 'nope'.*label_thr_10_0p002.*_binary"):
        train(dataset, "xgboost", "nope", WF, EMBARGO, **FAST)
    with pytest.raises(ValueError, match=r"xgboost trains 3 classes.*\[0, 1\]"):
        train(dataset, "xgboost", TB, WF, EMBARGO, **FAST)
    with pytest.raises(ValueError, match=r"lightgbm trains a binary label.*\[-1, 0, 1\]"):
        train(dataset, "lightgbm", THR, WF, EMBARGO, **FAST)
    # a triple barrier's return / touch index are not labels
    with pytest.raises(ValueError, match=r"unknown label 'tb_0p004_0p004_60_ret'"):
        train(dataset, "lightgbm", "tb_0p004_0p004_60_ret", WF, EMBARGO, **FAST)
    with pytest.raises(ValueError, match=r"no test window fits: usable data spans 2024-01-01.*"):
        train(dataset, "xgboost", THR, "train=30d,test=3d", EMBARGO, **FAST)
    with pytest.raises(
        ValueError,
        match=r"fold 0 \(train 2024-01-01.*: the valid slice has 8 usable rows, want >= 20",
    ):
        train(dataset, "xgboost", THR, "train=90m,test=1d", EMBARGO, **FAST)
    with pytest.raises(ValueError, match=r"--features \['nope'\] not in the dataset"):
        train(dataset, "xgboost", THR, WF, EMBARGO, features=["nope"], **FAST)
    with pytest.raises(ValueError, match="calibration 'beta'"):
        train(dataset, "xgboost", THR, WF, EMBARGO, calibration="beta", **FAST)


# --------------------------------------------------------------------------- the CLI


def test_cli_train_registers_promotes_and_syncs(
    dataset: Path,
    tmp_path: Path,
    ch_dsn: str,
    ch_db: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from infra.clickhouse import connect, query_df
    from offline import registry

    monkeypatch.setenv("CLICKHOUSE_DSN", ch_dsn)
    root = tmp_path / "registry"
    argv = ["offline", "train", "lightgbm", "--dataset", str(dataset), "--label", TB]
    argv += ["--walk-forward", WF, "--embargo", EMBARGO, "--out", str(root), "--n-estimators"]
    argv += ["20", "--features", "rsi_14,sma_10", "--promote", "--no-progress"]
    argv += ["--set", f'clickhouse.dsn="{ch_dsn}"', "--set", f'clickhouse.database="{ch_db}"']
    assert main(argv) == 0
    out = capsys.readouterr().out
    name = default_name("lightgbm", TB)
    assert name == "lightgbm-tb_0p004_0p004_60_binary"
    assert f"registered {name} v1" in out and "promoted" in out and "mean" in out
    mv = registry.resolve(root, name, "promoted")
    assert mv.version == "v1"
    meta = mv.meta
    keys = {"label", "kind", "horizon", "training_window", "data_fingerprint", "dataset"}
    keys |= {"walk_forward", "embargo", "params", "folds", "metrics", "feature_importance"}
    assert keys | {"calibration", "timings"} <= set(meta)
    assert meta["label"] == TB and meta["kind"] == "lightgbm" and meta["horizon"] == 60
    assert len(meta["folds"]) == 7 and meta["params"]["n_estimators"] == 20
    json.dumps(meta, allow_nan=False)
    direct = train(dataset, "lightgbm", TB, WF, EMBARGO, features=["rsi_14", "sma_10"], **FAST)
    assert meta["data_fingerprint"] == direct.data_fingerprint
    assert meta["training_window"] == direct.training_window
    x = load(dataset, "lightgbm", TB, ["rsi_14", "sma_10"]).x[:500]
    np.testing.assert_array_equal(mv.load().predict_proba(x), direct.model.predict_proba(x))
    rows = query_df(connect(ch_dsn, ch_db), f"SELECT name, version FROM `{ch_db}`.models")
    assert rows.rows() == [(name, "v1")]

    # a bad request fails before registering anything
    bad = [a if a != TB else "nope" for a in argv]
    assert main(bad) != 0
    assert "unknown label 'nope'" in capsys.readouterr().err
    assert [v.version for v in registry.versions(root, name)] == ["v1"]

"""`cryptoflow models retrain` (offline/registry/retrain.py) on real training sets (Binance 1m
bars, BTCUSDT + ETHUSDT, January 2024, feature set "core"), no mocks: a champion trained through
Jan 19 and promoted; challengers trained on the full month. The evaluation window is the last
`test` of the data and out of sample for both models, the champion's metrics are `evaluate()` on
those rows, the decision follows the metric's direction and `min_improvement`, a window the
champion has seen is skipped without registering, and bad requests fail naming what to fix."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from dataflows.backtest import parse_time
from dataflows.cli import main
from dataflows.cli_train import train_meta
from offline import registry
from offline.dataset import DatasetSpec, build_dataset, read_metadata
from offline.registry import RegistryError, RetrainResult
from offline.registry.retrain import LOWER_IS_BETTER, METRICS, decide, iso_ns
from offline.training import train
from offline.training.run import TrainResult, evaluate, iso, load
from offline.training.walkforward import in_range
from tests.dataflows.flowkit import sma_config
from tests.paths import BARS_2024_01

THR = "label_thr_10_0p002"
LABELS = ("threshold:h=10,thr=0.002", "triple_barrier:pt=0.004,sl=0.004,h=60,binary=1")
WF = "train=8d,test=3d,step=3d"
EMBARGO = "1h"
DAY = 86400 * 10**9
NAME = "xgb-thr"
FAST: dict[str, Any] = {"n_estimators": 20, "progress": False}
FAST_RT: dict[str, Any] = {"progress": False}


def _build(out: Path, feature_set: str, start: str, end: str) -> Path:
    s, e = parse_time(start), parse_time(end)
    assert s is not None and e is not None
    spec = DatasetSpec(
        f"file:{BARS_2024_01}", ("BTCUSDT", "ETHUSDT"), feature_set, LABELS, out, s, e, store=False
    )
    build_dataset(sma_config(["BTCUSDT", "ETHUSDT"]), spec, progress=False)
    return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("retrain")


@pytest.fixture(scope="module")
def early(folder: Path) -> Path:
    """The champion's training set: Jan 1 .. Jan 20 (exclusive)."""
    return _build(folder / "early.parquet", "core", "2024-01-01", "2024-01-20")


@pytest.fixture(scope="module")
def full(folder: Path) -> Path:
    """The latest data: the whole month."""
    return _build(folder / "full.parquet", "core", "2024-01-01", "2024-02-01")


@pytest.fixture(scope="module")
def champion_run(early: Path) -> TrainResult:
    return train(early, "xgboost", THR, WF, EMBARGO, **FAST)


@pytest.fixture
def root(tmp_path: Path, champion_run: TrainResult, early: Path) -> Path:
    """A registry whose NAME v1 (the champion run) is promoted."""
    out = tmp_path / "registry"
    mv = registry.register(out, NAME, champion_run.model, train_meta(champion_run, early))
    registry.promote(out, NAME, mv.version)
    return out


def _versions(root: Path) -> list[str]:
    return [mv.version for mv in registry.versions(root, NAME)]


def _promoted(root: Path) -> str:
    mv = registry.promoted(root, NAME)
    assert mv is not None
    return mv.version


def _same(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Metric dicts equal, NaN (recomputed) matching null (reported)."""
    assert set(a) == set(b)
    for k in a:
        va, vb = a[k], b[k]
        if va is None or vb is None or (isinstance(va, float) and math.isnan(va)):
            assert (va is None or math.isnan(va)) and (vb is None or math.isnan(vb)), k
        else:
            assert va == vb, k


def _expected(res: RetrainResult) -> bool:
    """The decision, recomputed from the reported metrics."""
    c, h = res.champion_metrics.get(res.metric), res.challenger_metrics.get(res.metric)
    if c is None or h is None:
        return False
    gain = c - h if res.metric in LOWER_IS_BETTER else h - c
    return bool(gain > res.min_improvement)


# --------------------------------------------------------------------------- the windows


def test_eval_window_is_the_last_test_and_out_of_sample_for_both(
    root: Path, full: Path, champion_run: TrainResult
) -> None:
    res = registry.retrain(root, NAME, dataset=full, progress=False)
    data = load(full, "xgboost", THR, list(champion_run.model.spec.feature_columns))
    t_end = int(data.ts[-1]) + 1
    e_start = t_end - 3 * DAY
    assert res.eval_window == {"start": iso(e_start), "end": iso(t_end)}
    assert res.eval_window["end"].startswith("2024-01-31T23:")
    # out of sample: both models' training windows end by E's start
    assert iso_ns(champion_run.training_window["end"]) <= e_start
    assert iso_ns(res.training_window["end"]) <= e_start
    assert res.training_window["start"] == iso(e_start - 8 * DAY)
    rows = in_range(data.ts, e_start, t_end)
    assert res.fold["rows"]["test"] == rows.size > 1000
    assert (res.fold["test_start"], res.fold["test_end"]) == (iso(e_start), iso(t_end))
    # the champion's metrics are evaluate() on exactly those rows, the challenger's are the
    # registered model's on them too
    champ = registry.resolve(root, NAME, "v1").load()
    want, _ = evaluate(data, champ, rows, 10.0)
    _same(want, res.champion_metrics)
    assert res.challenger is not None
    new = registry.resolve(root, NAME, res.challenger)
    got, _ = evaluate(data, new.load(), rows, 10.0)
    _same(got, res.challenger_metrics)
    # the registered attempt: offline-train meta plus the retrain block
    meta = new.meta
    assert meta["kind"] == "xgboost" and meta["label"] == THR and meta["horizon"] == 10
    assert meta["walk_forward"] == WF and meta["embargo"] == EMBARGO
    assert meta["params"] == champion_run.params and meta["calibration"] == "platt"
    assert meta["dataset"] == str(full) and meta["data_fingerprint"] == data.fingerprint
    assert meta["training_window"] == res.training_window
    assert len(meta["folds"]) == 1 and meta["metrics"] == res.challenger_metrics
    rt = meta["retrain"]
    assert rt["champion"] == "v1" and rt["eval_window"] == res.eval_window
    assert rt["metric"] == "log_loss" and rt["promoted"] == res.promoted
    assert rt["champion_metrics"] == res.champion_metrics and rt["reason"] == res.reason
    assert new.load().spec.feature_version == champ.spec.feature_version
    # the default metric decided, as its direction says
    assert res.promoted == _expected(res)
    assert _promoted(root) == (res.challenger if res.promoted else "v1")


def test_eval_window_override(root: Path, full: Path) -> None:
    res = registry.retrain(root, NAME, dataset=full, eval_window="2d", dry_run=True, **FAST_RT)
    assert iso_ns(res.eval_window["end"]) - iso_ns(res.eval_window["start"]) == 2 * DAY
    assert res.training_window["end"] == res.eval_window["start"]


# --------------------------------------------------------------------------- the decision


def test_decision_follows_the_metric_direction(root: Path, full: Path) -> None:
    # a dry run reports both sides' metrics and writes nothing
    dry = registry.retrain(root, NAME, dataset=full, dry_run=True, **FAST_RT)
    assert dry.challenger is None and _versions(root) == ["v1"] and _promoted(root) == "v1"
    # kept: no improvement is larger than this
    kept = registry.retrain(root, NAME, dataset=full, metric="auc", min_improvement=1e9, **FAST_RT)
    assert not kept.promoted and "min_improvement" in kept.reason
    assert kept.challenger == "v2" and _versions(root) == ["v1", "v2"]
    assert _promoted(root) == "v1"
    assert registry.resolve(root, NAME, "v2").meta["retrain"]["promoted"] is False
    # the same attempt again (same champion, window, data, rule) trains nothing
    again = registry.retrain(root, NAME, dataset=full, metric="auc", min_improvement=1e9, **FAST_RT)
    assert again.skipped is not None and "v2 was already compared with the champion v1" in (
        again.skipped
    )
    assert _versions(root) == ["v1", "v2"]
    # deterministic: the dry run's challenger is the registered one
    _same(dry.challenger_metrics, kept.challenger_metrics)
    _same(dry.champion_metrics, kept.champion_metrics)
    # promoted: a metric on which the challenger is strictly better (from the reports)
    better = [
        m
        for m in METRICS
        if decide(m, dry.champion_metrics.get(m), dry.challenger_metrics.get(m), 0.0)[0]
    ]
    assert better, (dry.champion_metrics, dry.challenger_metrics)
    won = registry.retrain(root, NAME, dataset=full, metric=better[0], **FAST_RT)
    assert won.promoted == _expected(won) is True
    assert won.champion == "v1" and won.challenger == "v3" and _promoted(root) == "v3"
    last = registry.promotions(root, NAME)[-1]
    assert (last["version"], last["previous"]) == ("v3", "v1")
    # the new champion won this very window: rerunning on the same data is a quiet no-op
    idle = registry.retrain(root, NAME, dataset=full, **FAST_RT)
    assert idle.skipped is not None and "the champion v3 won the same evaluation window" in (
        idle.skipped
    )
    assert _versions(root) == ["v1", "v2", "v3"] and _promoted(root) == "v3"
    # and every metric's decision matches its direction
    for m in METRICS:
        c, h = dry.champion_metrics.get(m), dry.challenger_metrics.get(m)
        ok, _ = decide(m, c, h, 0.0)
        if c is not None and h is not None:
            assert ok == ((h < c) if m in LOWER_IS_BETTER else (h > c)), m


def test_decide_rules() -> None:
    assert decide("log_loss", 0.7, 0.6, 0.0)[0] and not decide("log_loss", 0.6, 0.7, 0.0)[0]
    assert decide("auc", 0.5, 0.6, 0.0)[0] and not decide("auc", 0.6, 0.5, 0.0)[0]
    assert not decide("brier", 0.25, 0.25, 0.0)[0]  # equal is no win
    assert not decide("ece", 0.10, 0.09, 0.05)[0] and decide("ece", 0.10, 0.04, 0.05)[0]
    ok, why = decide("auc", None, 0.6, 0.0)
    assert not ok and "champion's auc" in why and "undefined" in why
    ok, why = decide("sharpe", 1.0, float("nan"), 0.0)
    assert not ok and "challenger's sharpe" in why


# --------------------------------------------------------------------------- skips and errors


def test_no_new_data_is_skipped_quietly(root: Path, early: Path) -> None:
    # the default dataset is the champion's own: nothing after its training end
    res = registry.retrain(root, NAME, **FAST_RT)
    assert res.skipped is not None and res.dataset == str(early)
    assert "trained through 2024-01-19T" in res.skipped and "evaluation needs 3d" in res.skipped
    assert "0.00 days after that" in res.skipped
    assert res.challenger is None and not res.promoted
    assert _versions(root) == ["v1"] and _promoted(root) == "v1"


def test_feature_version_mismatch_is_refused(
    root: Path, folder: Path, champion_run: TrainResult
) -> None:
    other = _build(folder / "tcn12.parquet", "tcn12", "2024-01-20", "2024-01-24")
    theirs = str(read_metadata(other)["feature_version"])
    ours = champion_run.model.spec.feature_version
    assert theirs != ours
    with pytest.raises(RegistryError, match="feature_version") as exc:
        registry.retrain(root, NAME, dataset=other, **FAST_RT)
    assert theirs in str(exc.value) and ours in str(exc.value)
    assert _versions(root) == ["v1"]


def test_no_champion_and_bad_requests(root: Path, full: Path, champion_run: TrainResult) -> None:
    registry.register(root, "lonely", champion_run.model, train_meta(champion_run, full))
    with pytest.raises(RegistryError, match=r"no promoted version.*models promote lonely v1"):
        registry.retrain(root, "lonely", dataset=full, **FAST_RT)
    with pytest.raises(RegistryError, match="no model 'nope'"):
        registry.retrain(root, "nope", dataset=full, **FAST_RT)
    with pytest.raises(ValueError, match="metric 'f1'"):
        registry.retrain(root, NAME, dataset=full, metric="f1", **FAST_RT)
    with pytest.raises(FileNotFoundError, match="no such dataset"):
        registry.retrain(root, NAME, dataset=full.with_name("gone.parquet"), **FAST_RT)
    with pytest.raises(ValueError, match="--eval-window '3 days'"):
        registry.retrain(root, NAME, dataset=full, eval_window="3 days", **FAST_RT)
    assert _versions(root) == ["v1"]


# --------------------------------------------------------------------------- the CLI


def test_cli_retrain(
    root: Path,
    full: Path,
    ch_dsn: str,
    ch_db: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from infra.clickhouse import connect, query_df

    monkeypatch.setenv("CLICKHOUSE_DSN", ch_dsn)
    ch = ["--set", f'clickhouse.dsn="{ch_dsn}"', "--set", f'clickhouse.database="{ch_db}"']
    base = ["models", "retrain", NAME, "--registry", str(root), "--no-progress", *ch]
    # the champion's own dataset: skipped, exit 0, nothing written
    assert main(base) == 0
    assert "skipped: the champion v1 was trained through" in capsys.readouterr().out
    assert _versions(root) == ["v1"]
    # a dry run prints the comparison and registers nothing
    assert main([*base, "--dataset", str(full), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "champion v1" in out and "challenger (dry run)" in out and "nothing registered" in out
    assert _versions(root) == ["v1"]
    # kept for sure: --metric overrides the config, nothing beats a huge min_improvement
    argv = [*base, "--dataset", str(full), "--metric", "auc", "--set", "models.min_improvement=1e9"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "auc *" in out and "challenger v2" in out and "kept v1; v2 registered" in out
    assert registry.resolve(root, NAME, "v2").meta["retrain"]["promoted"] is False
    assert _promoted(root) == "v1"
    # the decision metric from the config (brier, min_improvement 0)
    argv = [*base, "--dataset", str(full), "--set", 'models.champion_metric="brier"']
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "brier *" in out and "challenger v3" in out and "log_loss" in out
    mv = registry.resolve(root, NAME, "v3")
    rt = mv.meta["retrain"]
    assert rt["metric"] == "brier" and rt["champion"] == "v1"
    c, h = rt["champion_metrics"]["brier"], rt["challenger_metrics"]["brier"]
    won = h < c
    assert rt["promoted"] == won and _promoted(root) == ("v3" if won else "v1")
    assert ("v3 promoted (was v1)" if won else "kept v1; v3 registered") in out
    rows = query_df(
        connect(ch_dsn, ch_db), f"SELECT version, promoted FROM `{ch_db}`.models FINAL"
    ).rows()
    assert sorted((v, bool(p)) for v, p in rows) == [("v1", not won), ("v2", False), ("v3", won)]
    # no champion: a one-line error, exit 2, nothing registered
    registry.register(root, "lonely", mv.load(), {"kind": "xgboost"})
    lonely = [a if a != NAME else "lonely" for a in base]
    assert main(lonely) == 2
    assert "models promote lonely v1" in capsys.readouterr().err
    assert [v.version for v in registry.versions(root, "lonely")] == ["v1"]

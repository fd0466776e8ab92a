"""The model registry on real Binance bars (Jan 2024, 1m), no mocks: an XGBoost 3-class and a
LightGBM binary model trained on close-to-close returns, registered, reloaded bit-exact,
promoted, diffed, refused when tampered with, registered concurrently, mirrored into a real
chDB `models` table, and driven through `cryptoflow models`."""

from __future__ import annotations

import json
import re
import shutil
import threading
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl
import pytest
import xgboost as xgb

from dataflows.cli import main
from infra.clickhouse import connect, query_df
from offline import registry
from offline.registry import store
from operators.models.tree import Calibration, ModelSpec, TreeModel, spec_json
from tests.paths import BARS_2024_01

COLUMNS = ("ret_1", "ret_2", "ret_3")
ROWS = 400


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    """Lagged close-to-close returns of BTCUSDT and the sign of the next return."""
    close = (
        pl.read_parquet(BARS_2024_01)
        .filter(pl.col("symbol") == "BTCUSDT")
        .sort("open_time")["close"]
        .to_numpy()[: ROWS + 4]
    )
    r = np.diff(np.log(close))
    x = np.column_stack([r[2:-1], r[1:-2], r[:-3]])
    y = np.sign(r[3:]).astype(np.int64)  # -1, 0, 1
    return x, y


def xgb_model(x: np.ndarray, y: np.ndarray, rounds: int = 5) -> TreeModel:
    params = {"objective": "multi:softprob", "num_class": 3, "max_depth": 2, "nthread": 1}
    booster = xgb.train(params, xgb.DMatrix(x, y + 1), rounds)
    spec = ModelSpec("xgboost", (-1, 0, 1), COLUMNS, "returns", "fv0123456789")
    return TreeModel(spec, booster)


def lgb_model(x: np.ndarray, y: np.ndarray) -> TreeModel:
    params = {"objective": "binary", "num_leaves": 4, "num_threads": 1, "verbose": -1}
    booster = lgb.train(params, lgb.Dataset(x, (y > 0).astype(int)), 5)
    cal = Calibration("platt", a=(-3.0,), b=(1.5,))
    spec = ModelSpec("lightgbm", (0, 1), COLUMNS, "returns", "fv0123456789", cal)
    return TreeModel(spec, booster)


META: dict[str, Any] = {
    "label": "sign_next_1",
    "horizon": 1,
    "training_window": ["2024-01-01", "2024-01-02"],
    "data_fingerprint": "abc123",
    "folds": [{"log_loss": 1.05, "auc": 0.52}, {"log_loss": 1.07, "auc": 0.51}],
    "metrics": {"log_loss": {"mean": 1.06, "std": 0.01}, "auc": {"mean": 0.515}},
    "feature_importance": {"ret_1": 3.0, "ret_2": 1.0, "ret_3": 0.5},
}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "registry"


def test_register_numbers_versions_and_round_trips_exactly(
    root: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    x, y = data
    mx, ml = xgb_model(x, y), lgb_model(x, y)
    v1 = registry.register(root, "xgb-trend", mx, META)
    v2 = registry.register(root, "xgb-trend", xgb_model(x, y, 7), META)
    l1 = registry.register(root, "lgb.tb_1", ml, {"label": "up_next_1"})
    assert (v1.version, v2.version, l1.version) == ("v1", "v2", "v1")
    assert v2.path == root / "xgb-trend" / "v2" and (v2.path / "model.ubj").is_file()
    assert (l1.path / "model.txt").is_file()
    assert registry.names(root) == ["lgb.tb_1", "xgb-trend"]
    assert [v.version for v in registry.versions(root, "xgb-trend")] == ["v1", "v2"]
    for mv, model in ((v1, mx), (l1, ml)):
        loaded = mv.load()
        assert loaded.spec == model.spec
        assert np.array_equal(loaded.predict_proba(x), model.predict_proba(x))
    # what the registry adds, and the caller's keys as given
    meta = json.loads((v1.path / "meta.json").read_text())
    assert meta == v1.meta
    assert {k: meta[k] for k in META} == META
    assert (meta["name"], meta["version"]) == ("xgb-trend", "v1")
    assert meta["spec"] == spec_json(mx.spec)
    assert meta["model_sha256"] == store.sha256_file(v1.path / "model.ubj")
    assert isinstance(meta["registered_ns"], int) and meta["registered_ns"] > 1.7e18
    assert {"python", "numpy", "xgboost", "lightgbm"} <= set(meta["libraries"])
    assert meta["libraries"]["xgboost"] == xgb.__version__
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?|unknown", meta["git_revision"])
    if shutil.which("git"):
        assert meta["git_revision"] != "unknown"
    assert not [p for p in (root / "xgb-trend").iterdir() if p.name.startswith(".tmp")]


def test_versions_sort_numerically_v10_after_v9(
    root: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    model = xgb_model(*data)
    got = [registry.register(root, "m", model, {}).version for _ in range(11)]
    want = [f"v{n}" for n in range(1, 12)]
    assert got == want
    assert [mv.version for mv in registry.versions(root, "m")] == want  # not v1, v10, v11, v2
    assert registry.resolve(root, "m", "latest").version == "v11"
    assert registry.promote(root, "m", "v10").version == "v10"
    assert registry.resolve(root, "m").version == "v10"


def test_resolve_promote_and_the_promoted_file(
    root: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    x, y = data
    for _ in range(3):
        registry.register(root, "m", xgb_model(x, y), META)
    assert registry.promoted(root, "m") is None
    with pytest.raises(registry.RegistryError, match=r"cryptoflow models promote NAME VERSION"):
        registry.resolve(root, "m")
    assert registry.resolve(root, "m", "latest").version == "v3"
    assert registry.resolve(root, "m", "v2").version == "v2"

    assert registry.promote(root, "m", "v2").version == "v2"
    assert registry.promote(root, "m", "latest").version == "v3"
    assert registry.promote(root, "m", "v1").version == "v1"
    assert registry.resolve(root, "m").version == "v1"
    promoted = registry.promoted(root, "m")
    assert promoted is not None and promoted.version == "v1"
    pointer = json.loads((root / "m" / "PROMOTED").read_text())
    assert (pointer["name"], pointer["version"]) == ("m", "v1")
    assert not list((root / "m").glob("PROMOTED.tmp-*"))  # replaced, not left beside it
    history = registry.promotions(root, "m")
    assert [(h["version"], h["previous"]) for h in history] == [
        ("v2", None),
        ("v3", "v2"),
        ("v1", "v3"),
    ]
    assert [h["ts_ns"] for h in history] == sorted(h["ts_ns"] for h in history)


def test_unknown_names_versions_and_bad_requests_name_the_fix(
    root: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    x, y = data
    registry.register(root, "m", xgb_model(x, y), META)
    registry.register(root, "m", xgb_model(x, y), META)
    with pytest.raises(registry.RegistryError, match=r"no v7; known versions: v1, v2"):
        registry.promote(root, "m", "v7")
    with pytest.raises(registry.RegistryError, match=r"no v7; known versions: v1, v2"):
        registry.resolve(root, "m", "v7")
    with pytest.raises(registry.RegistryError, match=r"did you mean v2\?"):
        registry.resolve(root, "m", "2")
    with pytest.raises(registry.RegistryError, match=r"no model 'nope' .*known: m.*models list"):
        registry.resolve(root, "nope", "latest")
    with pytest.raises(registry.RegistryError, match=r"no model 'nope'"):
        registry.versions(root, "nope")
    with pytest.raises(registry.RegistryError, match=r"lower-case letters"):
        registry.register(root, "Bad Name", xgb_model(x, y), META)
    with pytest.raises(registry.RegistryError, match=r"lower-case letters"):
        registry.resolve(root, "../m")
    assert registry.names(root / "empty") == []


def test_meta_that_is_not_json_or_sets_registry_keys_is_refused_before_writing(
    root: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    model = xgb_model(*data)
    bad: list[tuple[dict[Any, Any], str]] = [
        ({"folds": [{"auc": np.int64(1)}]}, r"meta\['folds'\]\[0\]\['auc'\] is a int64"),
        ({"metrics": {"auc": float("nan")}}, r"meta\['metrics'\]\['auc'\] is nan.*null"),
        ({"x": {1: 2}}, r"key 1 is not a string"),
        ({"version": "v9", "spec": {}}, r"meta sets version, spec: the registry writes"),
    ]
    for meta, message in bad:
        with pytest.raises(registry.RegistryError, match=message):
            registry.register(root, "m", model, meta)
    assert not root.exists()  # nothing was written


def test_a_tampered_model_is_refused_on_load_and_promote(
    root: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    x, y = data
    mv = registry.register(root, "m", xgb_model(x, y), META)
    lv = registry.register(root, "l", lgb_model(x, y), META)
    path = mv.path / "model.ubj"
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    path.write_bytes(bytes(blob))
    with pytest.raises(registry.RegistryError, match=re.escape(str(path)) + r".*register"):
        registry.resolve(root, "m", "v1").load()
    with pytest.raises(registry.RegistryError, match=r"changed after registration"):
        registry.promote(root, "m", "v1")
    assert registry.promoted(root, "m") is None
    # an edited calibration (model.json) is refused too: the booster alone is not the model
    spec_path = lv.path / "model.json"
    spec = json.loads(spec_path.read_text())
    spec["calibration"]["b"] = [0.0]
    spec_path.write_text(json.dumps(spec))
    with pytest.raises(registry.RegistryError, match=r"model.json: the spec differs"):
        lv.load()
    (lv.path / "model.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"model.txt: the model file of l v1 is gone"):
        lv.load()


def test_diff_lists_exactly_the_changed_keys(
    root: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    x, y = data
    a = registry.register(root, "m", xgb_model(x, y), META)
    changed = json.loads(json.dumps(META))
    changed["folds"][1]["auc"] = 0.55
    changed["metrics"]["log_loss"]["mean"] = 1.01
    changed["extra"] = True
    del changed["data_fingerprint"]
    b = registry.register(root, "m", xgb_model(x, y), changed)
    got = registry.diff(a, b)
    assert [k for k, _, _ in got] == [
        "data_fingerprint",
        "extra",
        "folds.1.auc",
        "metrics.log_loss.mean",
        "registered_ns",
        "version",
    ]
    by_key = {k: (va, vb) for k, va, vb in got}
    assert by_key["folds.1.auc"] == (0.51, 0.55)
    assert by_key["data_fingerprint"] == ("abc123", registry.MISSING)
    assert by_key["extra"] == (registry.MISSING, True)
    assert by_key["version"] == ("v1", "v2")
    assert registry.diff(a, a) == []
    # another model: the booster's hash and the spec's kind/classes/calibration differ
    c = registry.register(root, "m", lgb_model(x, y), META)
    keys = {k for k, _, _ in registry.diff(a, c)}
    assert {"model_sha256", "spec.kind", "spec.classes", "spec.calibration.a"} <= keys
    assert "spec.feature_columns" not in keys


def test_concurrent_registrations_get_distinct_versions(
    root: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    x, y = data
    models = [xgb_model(x, y, 3 + i) for i in range(4)]
    start = threading.Barrier(len(models))
    got: list[registry.ModelVersion] = []
    errors: list[BaseException] = []

    def one(model: TreeModel) -> None:
        try:
            start.wait()
            got.append(registry.register(root, "race", model, META))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(m,)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(mv.version for mv in got) == ["v1", "v2", "v3", "v4"]
    # each version holds the model that registration wrote, whole
    for mv in got:
        model = models[_index(models, mv)]
        assert np.array_equal(mv.load().predict_proba(x), model.predict_proba(x))
        assert json.loads((mv.path / "meta.json").read_text())["version"] == mv.version


def _index(models: list[TreeModel], mv: registry.ModelVersion) -> int:
    """Which model a version holds: the one with as many boosting rounds (3, 4, 5, 6)."""
    loaded = mv.load()
    rounds = [m.booster.num_boosted_rounds() for m in models]
    return rounds.index(loaded.booster.num_boosted_rounds())


def test_a_lost_race_for_a_number_retries_with_the_next(
    root: Path, data: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every registration believes v1 is free (a stale listing): the rename onto the existing,
    non-empty v1 fails and the next number is taken, its meta.json saying so."""
    model = xgb_model(*data)
    monkeypatch.setattr(store, "_next_number", lambda folder: 1)
    versions = [registry.register(root, "m", model, META).version for _ in range(3)]
    assert versions == ["v1", "v2", "v3"]
    assert [
        json.loads((root / "m" / v / "meta.json").read_text())["version"] for v in versions
    ] == [
        "v1",
        "v2",
        "v3",
    ]


def _models_table(ch_dsn: str, ch_db: str) -> list[dict[str, Any]]:
    df = query_df(
        connect(ch_dsn, ch_db),
        f"SELECT name, version, promoted, kind, feature_set, label, metrics_json, meta_json "
        f"FROM `{ch_db}`.models FINAL WHERE run_id = 'registry' ORDER BY name, version",
    )
    return list(df.iter_rows(named=True))


def test_sync_clickhouse_rows_and_promoted_flags(
    root: Path, data: tuple[np.ndarray, np.ndarray], ch_dsn: str, ch_db: str
) -> None:
    x, y = data
    v1 = registry.register(root, "m", xgb_model(x, y), META)
    registry.register(root, "m", xgb_model(x, y), META)
    registry.register(root, "l", lgb_model(x, y), {"label": {"kind": "forward", "h": 1}})
    registry.promote(root, "m", "v1")
    client = connect(ch_dsn, ch_db)
    assert registry.sync_clickhouse(root, client, ch_db) == 3
    rows = _models_table(ch_dsn, ch_db)
    assert [(r["name"], r["version"], r["promoted"]) for r in rows] == [
        ("l", "v1", False),
        ("m", "v1", True),
        ("m", "v2", False),
    ]
    m1 = rows[1]
    assert (m1["kind"], m1["feature_set"], m1["label"]) == ("xgboost", "returns", "sign_next_1")
    assert json.loads(m1["metrics_json"]) == {"folds": META["folds"], "metrics": META["metrics"]}
    assert json.loads(m1["meta_json"]) == v1.meta
    assert json.loads(rows[0]["label"]) == {"h": 1, "kind": "forward"}

    registry.promote(root, "m", "v2")
    assert registry.sync_clickhouse(root, client, ch_db, "m") == 2
    assert registry.sync_clickhouse(root, client, ch_db, "m") == 2  # idempotent
    rows = _models_table(ch_dsn, ch_db)
    assert [(r["name"], r["version"], r["promoted"]) for r in rows] == [
        ("l", "v1", False),
        ("m", "v1", False),
        ("m", "v2", True),
    ]
    info = registry.model_info(v1, promoted=True, ts_init=5)
    assert (info.ts_event, info.ts_init, info.feature_version) == (
        v1.meta["registered_ns"],
        5,
        "fv0123456789",
    )
    assert registry.sync_clickhouse(root / "empty", client, ch_db) == 0


# --------------------------------------------------------------------------- the CLI


@pytest.fixture
def cli(root: Path, ch_dsn: str, ch_db: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The arguments every `cryptoflow models` call here takes: this registry and database."""
    monkeypatch.setenv("CLICKHOUSE_DSN", ch_dsn)  # in-process: the session's chDB path
    return ["--registry", str(root), "--set", f"clickhouse.database={ch_db}"]


def test_cli_list_show_promote_diff(
    root: Path,
    data: tuple[np.ndarray, np.ndarray],
    cli: list[str],
    ch_dsn: str,
    ch_db: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    x, y = data
    registry.register(root, "xgb-trend", xgb_model(x, y), META)
    changed = {**META, "metrics": {"log_loss": {"mean": 0.99}}}
    registry.register(root, "xgb-trend", xgb_model(x, y, 6), changed)
    registry.register(root, "lgb-tb", lgb_model(x, y), {"label": "up_next_1"})

    assert main(["models", "list", *cli]) == 0
    out = capsys.readouterr().out
    assert "3 model versions" in out
    lines = [ln for ln in out.splitlines() if "xgb-trend" in ln or "lgb-tb" in ln]
    assert len(lines) == 3 and "promoted" not in out.split("model versions", 1)[1]
    assert "log_loss.mean 1.06" in out and "log_loss.mean 0.99" in out
    assert "returns/fv0123456789" in out and "sign_next_1" in out

    assert main(["models", "promote", "xgb-trend", "v1", *cli]) == 0
    assert "xgb-trend: none -> v1 promoted" in capsys.readouterr().out
    assert main(["models", "promote", "xgb-trend", "v2", *cli]) == 0
    out = capsys.readouterr().out
    assert "xgb-trend: v1 -> v2 promoted" in out and f"2 rows written to {ch_db}.models" in out
    flags = [(r["version"], r["promoted"]) for r in _models_table(ch_dsn, ch_db)]
    assert flags == [("v1", False), ("v2", True)]

    assert main(["models", "list", "xgb-trend", *cli]) == 0
    out = capsys.readouterr().out
    assert "2 model versions" in out and "lgb-tb" not in out
    v2_line = next(ln for ln in out.splitlines() if " v2 " in ln)
    assert "promoted" in v2_line

    assert main(["models", "show", "xgb-trend", *cli]) == 0  # the promoted one
    out = capsys.readouterr().out
    assert "xgb-trend v2 (promoted)" in out and "metrics.log_loss.mean" in out
    assert main(["models", "show", "lgb-tb", *cli]) == 0  # none promoted: the latest
    out = capsys.readouterr().out
    assert "lgb-tb v1" in out and "(promoted)" not in out and "up_next_1" in out

    assert main(["models", "diff", "xgb-trend", "v1", "promoted", *cli]) == 0
    out = capsys.readouterr().out
    assert "keys differ" in out
    for key in ("metrics.log_loss.mean", "metrics.log_loss.std", "model_sha256", "version"):
        assert key in out
    assert "folds.0.auc" not in out and "feature_importance" not in out


def test_cli_errors_are_one_line_with_exit_2(
    root: Path,
    data: tuple[np.ndarray, np.ndarray],
    cli: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    registry.register(root, "xgb-trend", xgb_model(*data), META)
    cases = [
        (["models", "show", "nope"], "no model 'nope'"),
        (["models", "list", "nope"], "no model 'nope'"),
        (["models", "promote", "xgb-trend", "v3"], "known versions: v1"),
        (["models", "diff", "xgb-trend", "v1", "promoted"], "cryptoflow models promote"),
    ]
    for argv, message in cases:
        assert main([*argv, *cli]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and message in err, err
        assert "\n" not in err, err

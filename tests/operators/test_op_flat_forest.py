"""operators/models/flat_forest.py: the flattened forest scores exactly as the stock boosters do.

Models are trained on the `full` feature set computed over real Jan-2024 ETHUSDT bars, the
warm-up rows (NaN features) included. Margins are compared with the boosters' own raw output
(`inplace_predict(margin)`, `predict(raw_score)`) for equality; probabilities with the stock
LightGBM output (the same float64 formula) and with an independent per-row float64 link of the
stock XGBoost margin. Then: one row == batch bit for bit, pickling, and the forest.npz artifact
(round trip, stale or corrupt refused, rebuilt at promotion)."""

from __future__ import annotations

import copy
import itertools
import math
import pickle
from functools import cache
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest
import xgboost as xgb

from offline.registry import store
from operators.features import feature_set
from operators.models import flat_forest as ff
from operators.models.tree import ModelSpec, TreeModel, ensure_forest
from tests.operators.opdata import real_bars

N_ROWS = 4000
TRAIN = slice(0, 3000)  # warm-up rows included: xgboost/lightgbm learn NaN directions


@cache
def data() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    fs = feature_set("full")
    btc = {b.ts_event: b for b in real_bars("BTCUSDT")}
    eth = real_bars("ETHUSDT")[:N_ROWS]
    x = []
    for b in eth:
        ref = {"ETHUSDT": b} | ({"BTCUSDT": btc[b.ts_event]} if b.ts_event in btc else {})
        x.append(fs.update(b, ref))
    close = np.array([b.close for b in eth])
    fwd = np.roll(close, -10) / close - 1.0
    y = np.where(fwd > 1e-3, 2, np.where(fwd < -1e-3, 0, 1))
    arr = np.array(x, dtype=np.float64)
    assert np.isnan(arr[: fs.warmup]).any(axis=1).all(), "warm-up rows should carry NaN"
    return arr, y, fs.columns


XGB = {
    "xgb3-d2": ({"objective": "multi:softprob", "num_class": 3, "max_depth": 2}, 40),
    "xgb3-d7": ({"objective": "multi:softprob", "num_class": 3, "max_depth": 7}, 30),
    "xgb2-d4": ({"objective": "binary:logistic", "max_depth": 4}, 30),
}
LGB = {
    "lgb2-l4": ({"objective": "binary", "num_leaves": 4}, 40),
    "lgb2-l63": ({"objective": "binary", "num_leaves": 63, "min_data_in_leaf": 5}, 30),
    "lgb2-zero": ({"objective": "binary", "num_leaves": 15, "zero_as_missing": True}, 20),
    "lgb2-nomiss": ({"objective": "binary", "num_leaves": 15, "use_missing": False}, 20),
    "lgb3-l15": ({"objective": "multiclass", "num_class": 3, "num_leaves": 15}, 20),
    "lgb3-ova": ({"objective": "multiclassova", "num_class": 3, "num_leaves": 7}, 15),
}


@cache
def booster(name: str) -> tuple[str, Any]:
    x, y, _ = data()
    if name in XGB:
        params, rounds = XGB[name]
        yy = y if params["objective"].startswith("multi") else (y == 2).astype(int)
        p = {**params, "nthread": 1, "seed": 0}
        return "xgboost", xgb.train(p, xgb.DMatrix(x[TRAIN], yy[TRAIN]), rounds)
    params, rounds = LGB[name]
    yy = y if params["objective"].startswith("multi") else (y == 2).astype(int)
    p = {**params, "num_threads": 1, "verbose": -1, "seed": 0}
    return "lightgbm", lgb.train(p, lgb.Dataset(x[TRAIN], yy[TRAIN]), rounds)


def stock_proba(kind: str, b: Any, x: np.ndarray) -> np.ndarray:
    p = np.asarray(
        b.inplace_predict(x) if kind == "xgboost" else b.predict(x, num_threads=1)
    ).astype(np.float64)
    return np.column_stack([1.0 - p, p]) if p.ndim == 1 else p


def link_reference(kind: str, link: str, m: np.ndarray) -> np.ndarray:
    """The link written out per row in plain Python floats (math.exp, as the kernel calls)."""
    rows = []
    for r in m.tolist():
        if link == "sigmoid":
            p = 1.0 / (1.0 + math.exp(-r[0]))
            rows.append([1.0 - p, p])
        elif link == "ova":
            rows.append([1.0 / (1.0 + math.exp(-v)) for v in r])
        else:
            top = max(r)
            e = [math.exp(v - top) for v in r]
            total = sum(e)
            rows.append([v / total for v in e])
    return np.array(rows)


ALL = [*XGB, *LGB]


@pytest.mark.parametrize("name", ALL)
def test_margins_and_probabilities_equal_the_stock_booster(name: str) -> None:
    kind, b = booster(name)
    x, _, _ = data()
    forest = ff.from_booster(kind, b)
    want = ff.booster_margin(kind, b, x)
    assert np.isnan(x).any() and want.shape == (len(x), len(forest.arrays["base"]))
    np.testing.assert_array_equal(forest.margin(x), want)
    p = forest.proba(x)
    np.testing.assert_array_equal(p, link_reference(kind, forest.link, want))
    if kind == "lightgbm":  # lightgbm's own link is this float64 formula: equal
        np.testing.assert_array_equal(p, stock_proba(kind, b, x))
    else:  # xgboost's is float32: equal to its precision only
        np.testing.assert_allclose(p, stock_proba(kind, b, x), rtol=0, atol=2e-6)
    forest.check(b, x)  # the probe check passes on its own booster


def test_depth_and_missing_variety_is_really_exercised() -> None:
    depths = {}
    for name in ALL:
        kind, b = booster(name)
        f = ff.from_booster(kind, b)
        lay = f._layout
        depths[name] = len(lay.active)
        if kind == "lightgbm":
            mt = f.arrays["flags"][f.arrays["left"] >= 0] >> 1
            want = {"lgb2-zero": 1, "lgb2-nomiss": 0}.get(name, 2)
            assert want in set(mt.tolist()), f"{name}: no split with missing_type {want}"
    assert depths["xgb3-d2"] == 2 and depths["xgb3-d7"] == 7
    assert depths["lgb2-l63"] > 10 > depths["lgb2-l4"]


@pytest.mark.parametrize("name", ALL)
def test_one_row_equals_batch_bit_for_bit(name: str) -> None:
    kind, b = booster(name)
    x, _, _ = data()
    forest = ff.from_booster(kind, b)
    batch_p, batch_m = forest.proba(x), forest.margin(x)
    rows = range(0, len(x), 37)
    one = np.vstack([forest.proba(x[i : i + 1]) for i in rows])
    np.testing.assert_array_equal(one, batch_p[::37])
    np.testing.assert_array_equal(
        np.vstack([forest.margin(x[i : i + 1]) for i in rows]), batch_m[::37]
    )
    cuts = [0, 1, 2, 65, 66, 500, 1777, len(x)]
    chunks = np.vstack([forest.proba(x[a:c]) for a, c in itertools.pairwise(cuts)])
    np.testing.assert_array_equal(chunks, batch_p)


def _tree_model(name: str) -> TreeModel:
    kind, b = booster(name)
    _, _, cols = data()
    n = len(ff.from_booster(kind, b).arrays["base"])
    classes = (-1, 0, 1) if n == 3 else (0, 1)
    return TreeModel(ModelSpec(kind, classes, cols, "full", "f00d"), b)


@pytest.mark.parametrize("name", ["xgb3-d7", "lgb2-l63"])
def test_tree_model_scores_with_the_forest_and_survives_pickling(name: str) -> None:
    model = _tree_model(name)
    x, _, _ = data()
    p = model.raw_proba(x)
    np.testing.assert_array_equal(p, model.forest.proba(x))
    back = pickle.loads(pickle.dumps(model))
    assert copy.deepcopy(model) is model
    np.testing.assert_array_equal(back.raw_proba(x), p)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(model.forest)).proba(x), p)


def test_a_forest_that_disagrees_with_its_booster_is_refused() -> None:
    model = _tree_model("xgb3-d2")
    a = {k: v.copy() for k, v in model.forest.arrays.items()}
    root = int(a["roots"][0])
    a["left"][root], a["right"][root] = a["right"][root], a["left"][root]
    bad = ff.FlatForest("xgboost", model.n_features, "softmax", 1.0, a)
    with pytest.raises(ff.ForestError, match="disagrees with its booster"):
        TreeModel(model.spec, model.booster, bad)


def test_unsupported_models_are_refused_by_name() -> None:
    x, y, _ = data()
    reg = xgb.train({"objective": "reg:squarederror", "nthread": 1}, xgb.DMatrix(x, y), 2)
    with pytest.raises(ff.ForestError, match="reg:squarederror"):
        ff.from_booster("xgboost", reg)
    params = {"objective": "regression", "verbose": -1, "num_threads": 1}
    lreg = lgb.train(params, lgb.Dataset(x, y.astype(float)), 2)
    with pytest.raises(ff.ForestError, match="'regression'"):
        ff.from_booster("lightgbm", lreg)


@pytest.mark.parametrize("name", ["xgb3-d7", "lgb3-l15"])
def test_artifact_round_trip_and_stale_or_corrupt_refused(name: str, tmp_path: Path) -> None:
    model = _tree_model(name)
    x, _, _ = data()
    model.save(tmp_path / "a")
    assert not (tmp_path / "a" / ff.FOREST_FILE).exists()  # save writes the booster only
    model.save_forest(tmp_path / "a")
    first = (tmp_path / "a" / ff.FOREST_FILE).read_bytes()
    model.save_forest(tmp_path / "a")
    assert (tmp_path / "a" / ff.FOREST_FILE).read_bytes() == first  # byte-deterministic
    back = TreeModel.load(tmp_path / "a")
    assert back.forest.digest() == model.forest.digest()
    np.testing.assert_array_equal(back.raw_proba(x), model.raw_proba(x))
    # another model's forest beside this model file: stale, refused naming both hashes
    other = _tree_model("xgb3-d2" if name.startswith("xgb") else "lgb3-ova")
    other.save(tmp_path / "b")
    other.save_forest(tmp_path / "b")
    (tmp_path / "b" / ff.FOREST_FILE).write_bytes(first)
    with pytest.raises(ff.StaleForest, match="stale"):
        TreeModel.load(tmp_path / "b")
    # one threshold moved by one ulp, the header kept: the digest refuses it
    with np.load(tmp_path / "a" / ff.FOREST_FILE) as z:
        blobs = dict(z)
    thr = blobs["threshold"].copy()
    thr[3] = np.nextafter(thr[3], np.inf)
    np.savez(tmp_path / "c.npz", **(blobs | {"threshold": thr}))
    sha = store.sha256_file(tmp_path / "a" / store.MODEL_FILES[model.spec.kind])
    with pytest.raises(ff.ForestError, match="digest"):
        ff.FlatForest.load(tmp_path / "c.npz", sha)
    # a missing artifact: the forest is built from the booster, the same forest
    (tmp_path / "a" / ff.FOREST_FILE).unlink()
    assert TreeModel.load(tmp_path / "a").forest.digest() == model.forest.digest()


def test_registry_writes_the_artifact_and_promotion_rebuilds_a_stale_one(tmp_path: Path) -> None:
    model, other = _tree_model("lgb2-l4"), _tree_model("lgb2-l63")
    mv = store.register(tmp_path, "m", model, {})
    path = mv.path / ff.FOREST_FILE
    assert path.is_file()
    sha = store.sha256_file(mv.model_file)
    assert ff.FlatForest.load(path, sha).digest() == model.forest.digest()
    other.save(tmp_path / "o")  # a forest of another model, copied over this version's
    other.save_forest(tmp_path / "o")
    path.write_bytes((tmp_path / "o" / ff.FOREST_FILE).read_bytes())
    with pytest.raises(ff.StaleForest):
        mv.load()
    store.promote(tmp_path, "m", "v1")
    assert ff.FlatForest.load(path, sha).digest() == model.forest.digest()
    assert not ensure_forest(mv.path)  # current: left alone
    path.unlink()
    assert ensure_forest(mv.path) and path.is_file()
    x, _, _ = data()
    np.testing.assert_array_equal(mv.load().raw_proba(x), model.raw_proba(x))

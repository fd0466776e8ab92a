"""Fit one XGBoost (3-class `multi:softprob`) or LightGBM (binary) model on a fit slice with
early stopping on a validation slice, then calibrate its raw probabilities on a calibration
slice into `operators.models.tree.Calibration` (applied by `calibrate()` when scoring).

Deterministic: one thread count, fixed seeds, histogram trees built row-wise; the booster is cut
to its best iteration and reloaded from its own bytes, so the model in memory is exactly the one
a registry stores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from operators.models.tree import Calibration, CalibrationMethod, Kind, ModelSpec, TreeModel


@dataclass(frozen=True)
class Params:
    n_estimators: int = 300
    max_depth: int = 6  # xgboost
    num_leaves: int = 31  # lightgbm
    learning_rate: float = 0.05
    early_stopping_rounds: int = 30
    threads: int = 1
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Fitted:
    model: TreeModel
    best_iteration: int  # 0-based index of the last tree kept
    gain: dict[str, float] = field(default_factory=dict)


def balanced_weights(y: np.ndarray, k: int) -> np.ndarray:
    """n / (k * n_c) per row of class c (scikit-learn's "balanced")."""
    counts = np.bincount(y, minlength=k).astype(np.float64)
    w = np.zeros(k)
    present = counts > 0
    w[present] = y.shape[0] / (np.sum(present) * counts[present])
    out: np.ndarray = w[y]
    return out


def _fit_xgb(
    x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, cols: list[str], p: Params
) -> tuple[Any, int]:
    import xgboost as xgb

    params = {
        "objective": "multi:softprob",
        "num_class": 3,
        "max_depth": p.max_depth,
        "eta": p.learning_rate,
        "nthread": p.threads,
        "seed": p.seed,
        "tree_method": "hist",
        "eval_metric": "mlogloss",
        "verbosity": 0,
    }
    dfit = xgb.DMatrix(x, y, weight=balanced_weights(y, 3), feature_names=cols, nthread=p.threads)
    dval = xgb.DMatrix(xv, yv, weight=balanced_weights(yv, 3), feature_names=cols)
    b = xgb.train(
        params,
        dfit,
        p.n_estimators,
        evals=[(dval, "valid")],
        early_stopping_rounds=p.early_stopping_rounds,
        verbose_eval=False,
    )
    best = int(b.best_iteration)
    cut = xgb.Booster()
    cut.load_model(bytearray(b[: best + 1].save_raw("ubj")))
    cut.set_param({"nthread": p.threads})
    return cut, best


def _fit_lgb(
    x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, cols: list[str], p: Params
) -> tuple[Any, int]:
    import lightgbm as lgb

    params = {
        "objective": "binary",
        "num_leaves": p.num_leaves,
        "learning_rate": p.learning_rate,
        "num_threads": p.threads,
        "seed": p.seed,
        "deterministic": True,
        "force_row_wise": True,
        "verbose": -1,
        "metric": "binary_logloss",
    }
    dfit = lgb.Dataset(x, y, weight=balanced_weights(y, 2), feature_name=cols)
    dval = lgb.Dataset(xv, yv, weight=balanced_weights(yv, 2), reference=dfit)
    b = lgb.train(
        params,
        dfit,
        p.n_estimators,
        valid_sets=[dval],
        callbacks=[lgb.early_stopping(p.early_stopping_rounds, verbose=False)],
    )
    best = int(b.best_iteration or b.current_iteration())
    # Reload from the cut text: what TreeModel.save writes, without the trees past the best.
    cut = lgb.Booster(model_str=b.model_to_string(num_iteration=best))
    return cut, best - 1


def fit_calibration(method: CalibrationMethod, raw: np.ndarray, y: np.ndarray) -> Calibration:
    """One-vs-rest calibrators of the raw class probabilities (binary: class 1 only)."""
    if method == "none":
        return Calibration()
    k = raw.shape[1]
    cols = [1] if k == 2 else list(range(k))
    if method == "platt":
        from sklearn.calibration import _SigmoidCalibration  # type: ignore[import-untyped]

        a: list[float] = []
        b: list[float] = []
        for c in cols:
            sc = _SigmoidCalibration().fit(raw[:, c], (y == c).astype(np.float64))
            a.append(float(sc.a_))
            b.append(float(sc.b_))
        return Calibration("platt", a=tuple(a), b=tuple(b))
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression  # type: ignore[import-untyped]

        xs: list[tuple[float, ...]] = []
        ys: list[tuple[float, ...]] = []
        for c in cols:
            iso = IsotonicRegression(out_of_bounds="clip").fit(
                raw[:, c], (y == c).astype(np.float64)
            )
            xs.append(tuple(float(v) for v in iso.X_thresholds_))
            ys.append(tuple(float(v) for v in iso.y_thresholds_))
        return Calibration("isotonic", x=tuple(xs), y=tuple(ys))
    raise ValueError(f"calibration {method!r}: want platt, isotonic or none")


def gain_importance(model: TreeModel) -> dict[str, float]:
    """Total split gain per feature column, normalized to sum 1 (all 0 for a tree-less model)."""
    cols = list(model.spec.feature_columns)
    if model.spec.kind == "xgboost":
        score = model.booster.get_score(importance_type="total_gain")
        g = np.array([float(score.get(c, 0.0)) for c in cols])
    else:
        g = np.asarray(model.booster.feature_importance("gain"), dtype=np.float64)
    total = float(g.sum())
    return {c: (float(v) / total if total > 0 else 0.0) for c, v in zip(cols, g, strict=True)}


def fit_model(
    kind: Kind,
    classes: tuple[int, ...],
    x: np.ndarray,
    y: np.ndarray,
    split: Any,
    spec_base: tuple[list[str], str, str],
    calibration: CalibrationMethod,
    params: Params,
) -> Fitted:
    """Train on `split.fit`, stop early on `split.valid`, calibrate on `split.calib`. `x`/`y`
    are the full usable rows (y as class indices), `split` an InnerSplit of row indices."""
    cols, feature_set, feature_version = spec_base
    fitter = _fit_xgb if kind == "xgboost" else _fit_lgb
    booster, best = fitter(x[split.fit], y[split.fit], x[split.valid], y[split.valid], cols, params)
    bare = ModelSpec(kind, classes, tuple(cols), feature_set, feature_version)
    raw = TreeModel(bare, booster).raw_proba(x[split.calib])
    cal = fit_calibration(calibration, raw, y[split.calib])
    spec = ModelSpec(kind, classes, tuple(cols), feature_set, feature_version, cal)
    model = TreeModel(spec, booster)
    return Fitted(model, best, gain_importance(model))

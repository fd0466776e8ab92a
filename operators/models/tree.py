"""A trained gradient-boosted tree model with its calibration, scored the same way offline and in
the stream: `predict_proba(X)` for a batch of rows (one row live), calibrated, classes in order.

Files of one model (a registry version folder holds them, see offline/registry/):
  model.ubj | model.txt   the booster (XGBoost UBJSON | LightGBM text: both load bit-exact)
  model.json              `ModelSpec` below: kind, classes, feature columns, calibration

Calibration is stored as plain numbers and applied here with numpy, so scoring needs neither
scikit-learn nor the training code, and offline and stream share this one function:
  platt     p_k = 1 / (1 + exp(a_k * s_k + b_k)) on the raw class score s_k (sklearn's sigmoid)
  isotonic  p_k = interp(s_k, x_k, y_k), clipped to the fitted range (sklearn's isotonic)
then, with more than two classes, normalized to sum 1 (one-vs-rest, as sklearn does); a binary
model calibrates the positive class and sets p_0 = 1 - p_1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import msgspec
import numpy as np

Kind = Literal["xgboost", "lightgbm"]
CalibrationMethod = Literal["none", "platt", "isotonic"]
MODEL_FILES: dict[str, str] = {"xgboost": "model.ubj", "lightgbm": "model.txt"}
SPEC_FILE = "model.json"


class Calibration(msgspec.Struct, frozen=True):
    method: CalibrationMethod = "none"
    # platt: one (a, b) per calibrated class; isotonic: one (x, y) threshold list per class
    a: tuple[float, ...] = ()
    b: tuple[float, ...] = ()
    x: tuple[tuple[float, ...], ...] = ()
    y: tuple[tuple[float, ...], ...] = ()


class ModelSpec(msgspec.Struct, frozen=True):
    kind: Kind
    classes: tuple[int, ...]  # label values in probability-column order, e.g. (-1, 0, 1) or (0, 1)
    feature_columns: tuple[str, ...]  # the model's inputs, in order
    feature_set: str
    feature_version: str  # the set's version hash the columns came from
    calibration: Calibration = Calibration()


class TreeModel:
    """Immutable once built: deep copies share it (flow snapshots copy operator state)."""

    def __init__(self, spec: ModelSpec, booster: Any) -> None:
        if len(spec.classes) < 2:
            raise ValueError(f"a classifier needs >= 2 classes, got {spec.classes}")
        if not spec.feature_columns:
            raise ValueError("a model needs at least one feature column")
        self.spec = spec
        self.booster = booster

    def __deepcopy__(self, memo: dict[int, Any]) -> TreeModel:
        return self

    @property
    def n_features(self) -> int:
        return len(self.spec.feature_columns)

    def raw_proba(self, x: np.ndarray) -> np.ndarray:
        """Uncalibrated class probabilities, shape (n, n_classes)."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"want rows of {self.n_features} features, got shape {x.shape}")
        k = len(self.spec.classes)
        if self.spec.kind == "xgboost":
            p = np.asarray(self.booster.inplace_predict(x, validate_features=False))
        else:
            p = np.asarray(self.booster.predict(x, num_threads=1))
        p = p.astype(np.float64, copy=False)
        if k == 2 and p.ndim == 1:
            p = np.column_stack([1.0 - p, p])
        if p.shape != (x.shape[0], k):
            raise ValueError(f"booster returned shape {p.shape}, want {(x.shape[0], k)}")
        return p

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities, shape (n, n_classes); row i depends on x[i] only."""
        return calibrate(self.spec.calibration, self.raw_proba(x))

    # --- files -----------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / MODEL_FILES[self.spec.kind]
        if self.spec.kind == "xgboost":
            self.booster.save_model(str(path))
        else:
            path.write_text(self.booster.model_to_string())
        (folder / SPEC_FILE).write_bytes(msgspec.json.format(msgspec.json.encode(self.spec)))

    @classmethod
    def load(cls, folder: Path) -> TreeModel:
        spec_path = folder / SPEC_FILE
        if not spec_path.is_file():
            raise FileNotFoundError(f"{spec_path}: no model spec (is {folder} a model version?)")
        spec = msgspec.json.decode(spec_path.read_bytes(), type=ModelSpec)
        path = folder / MODEL_FILES[spec.kind]
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the {spec.kind} model file is missing")
        booster: Any
        if spec.kind == "xgboost":
            import xgboost as xgb

            booster = xgb.Booster()
            booster.load_model(str(path))
            booster.set_param({"nthread": 1})
        else:
            import lightgbm as lgb

            booster = lgb.Booster(model_str=path.read_text())
        return cls(spec, booster)


def calibrate(cal: Calibration, p: np.ndarray) -> np.ndarray:
    if cal.method == "none":
        return p
    k = p.shape[1]
    cols = [1] if k == 2 else list(range(k))
    n_cal = len(cal.a) if cal.method == "platt" else len(cal.x)
    if n_cal != len(cols):
        raise ValueError(f"{cal.method} calibration has {n_cal} classes, the model {len(cols)}")
    out = np.empty_like(p)
    for j, c in enumerate(cols):
        s = p[:, c]
        if cal.method == "platt":
            out[:, c] = 1.0 / (1.0 + np.exp(cal.a[j] * s + cal.b[j]))
        else:
            xs, ys = np.asarray(cal.x[j]), np.asarray(cal.y[j])
            out[:, c] = np.interp(np.clip(s, xs[0], xs[-1]), xs, ys)
    if k == 2:
        out[:, 0] = 1.0 - out[:, 1]
        return out
    total = out.sum(axis=1, keepdims=True)
    uniform = np.full_like(out, 1.0 / k)
    return np.where(total > 0.0, out / np.where(total > 0.0, total, 1.0), uniform)


def spec_json(spec: ModelSpec) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(msgspec.json.encode(spec))
    return out

"""A trained gradient-boosted tree model with its calibration, scored the same way offline and in
the stream: `predict_proba(X)` for a batch of rows (one row live), calibrated, classes in order.

Files of one model (a registry version folder holds them, see offline/registry/):
  model.ubj | model.txt   the booster (XGBoost UBJSON | LightGBM text: both load bit-exact)
  model.json              `ModelSpec` below: kind, classes, feature columns, calibration
  forest.npz              the booster's trees flattened (flat_forest.py; `save_forest`, the
                          registry writes it), tied to the model file's sha256: loading
                          refuses a stale one and builds the forest itself when it is absent

Scoring never calls the booster: `raw_proba` is the flattened forest's kernel (margins equal
to the booster's bit for bit, checked on probe rows whenever a model is built or loaded) and
our float64 softmax/sigmoid, for a batch and for one row alike (ADR 0013).

Calibration is stored as plain numbers and applied here with numpy, so scoring needs neither
scikit-learn nor the training code, and offline and stream share this one function:
  platt     p_k = 1 / (1 + exp(a_k * s_k + b_k)) on the raw class score s_k (sklearn's sigmoid)
  isotonic  p_k = interp(s_k, x_k, y_k), clipped to the fitted range (sklearn's isotonic)
then, with more than two classes, normalized to sum 1 (one-vs-rest, as sklearn does); a binary
model calibrates the positive class and sets p_0 = 1 - p_1.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any, Literal

import msgspec
import numpy as np

from operators.models.flat_forest import FOREST_FILE, FlatForest, ForestError, from_booster

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

    def __init__(self, spec: ModelSpec, booster: Any, forest: FlatForest | None = None) -> None:
        if len(spec.classes) < 2:
            raise ValueError(f"a classifier needs >= 2 classes, got {spec.classes}")
        if not spec.feature_columns:
            raise ValueError("a model needs at least one feature column")
        forest = from_booster(spec.kind, booster) if forest is None else forest
        want = (spec.kind, len(spec.feature_columns), len(spec.classes))
        got = (forest.kind, forest.n_features, forest.n_classes)
        if got != want:
            raise ValueError(
                f"the booster/forest is (kind, features, classes) {got}, the spec says {want}: "
                "the model file and model.json do not belong together"
            )
        forest.check(booster)  # refuses a forest that does not score as its booster does
        self.spec = spec
        self.booster = booster
        self.forest = forest
        self._calibrate = Calibrator(spec.calibration, len(spec.classes))

    def __deepcopy__(self, memo: dict[int, Any]) -> TreeModel:
        return self

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_calibrate"}  # derived

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._calibrate = Calibrator(self.spec.calibration, len(self.spec.classes))

    @property
    def n_features(self) -> int:
        return len(self.spec.feature_columns)

    def raw_proba(self, x: np.ndarray) -> np.ndarray:
        """Uncalibrated class probabilities, shape (n, n_classes): one function for a batch and
        for one row (each row is scored alone by the same kernel code)."""
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"want rows of {self.n_features} features, got shape {x.shape}")
        return self.forest.proba(x)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities, shape (n, n_classes); row i depends on x[i] only."""
        return self._calibrate(self.raw_proba(x))

    # --- files -----------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / MODEL_FILES[self.spec.kind]
        if self.spec.kind == "xgboost":
            self.booster.save_model(str(path))
        else:
            path.write_text(self.booster.model_to_string())
        (folder / SPEC_FILE).write_bytes(msgspec.json.format(msgspec.json.encode(self.spec)))

    def save_forest(self, folder: Path) -> None:
        """forest.npz beside the model file `save` wrote (the registry's scoring artifact),
        tied to that file's sha256; replaced atomically."""
        data = (folder / MODEL_FILES[self.spec.kind]).read_bytes()
        tmp = folder / f".{FOREST_FILE}.tmp-{uuid.uuid4().hex[:12]}"
        try:
            self.forest.save(tmp, _sha256(data))
            os.replace(tmp, folder / FOREST_FILE)
        finally:
            tmp.unlink(missing_ok=True)

    @classmethod
    def load(cls, folder: Path, use_forest: bool = True) -> TreeModel:
        """The model in `folder`; its forest.npz if present (refused when stale or corrupt),
        else (or with use_forest=False) the forest is built from the booster."""
        spec_path = folder / SPEC_FILE
        if not spec_path.is_file():
            raise FileNotFoundError(f"{spec_path}: no model spec (is {folder} a model version?)")
        spec = msgspec.json.decode(spec_path.read_bytes(), type=ModelSpec)
        path = folder / MODEL_FILES[spec.kind]
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the {spec.kind} model file is missing")
        data = path.read_bytes()
        booster: Any
        if spec.kind == "xgboost":
            import xgboost as xgb

            booster = xgb.Booster()
            booster.load_model(bytearray(data))
            booster.set_param({"nthread": 1})
        else:
            import lightgbm as lgb

            booster = lgb.Booster(model_str=data.decode())
        forest_path = folder / FOREST_FILE
        forest = None
        if use_forest and forest_path.is_file():
            forest = FlatForest.load(forest_path, _sha256(data))
        return cls(spec, booster, forest)


def ensure_forest(folder: Path) -> bool:
    """Make `folder`'s forest.npz current: kept if it loads and scores as the booster does,
    else (missing, stale, corrupt) rebuilt from the model file and replaced atomically; True if
    it was written."""
    path = folder / FOREST_FILE
    if path.is_file():
        try:
            TreeModel.load(folder)
            return False
        except ForestError:
            pass  # stale or corrupt: rebuilt below from the booster
    TreeModel.load(folder, use_forest=False).save_forest(folder)
    return True


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def calibrate(cal: Calibration, p: np.ndarray) -> np.ndarray:
    """`cal` applied to float64 raw probabilities `p` of shape (n, classes)."""
    return Calibrator(cal, p.shape[1])(p)


class Calibrator:
    """A calibration prepared once for a model of k classes (its numbers as arrays and floats),
    applied to all classes at once. A batch is a few numpy operations over (n, k); one row, the
    live case, is the same operations on Python floats, which skips numpy's per-call cost
    (microseconds each) and gives the same bits: +, *, / are IEEE-rounded either way, exp is
    numpy's in both, and the classes are summed left to right in both. Every operation is per
    row, so no row's floats depend on the rows scored with it."""

    def __init__(self, cal: Calibration, k: int) -> None:
        n_cal = len(cal.a) if cal.method == "platt" else len(cal.x)
        want = 1 if k == 2 else k
        if cal.method != "none" and n_cal != want:
            raise ValueError(f"{cal.method} calibration has {n_cal} classes, the model {want}")
        if len(cal.a) != len(cal.b) or len(cal.x) != len(cal.y):
            raise ValueError(f"{cal.method} calibration: a/b or x/y of different lengths")
        self.method = cal.method
        self.k = k
        self.ab = list(zip(cal.a, cal.b, strict=True))
        self.a = np.array([cal.a], dtype=np.float64)  # (1, classes): broadcasts over rows
        self.b = np.array([cal.b], dtype=np.float64)
        self.xy = [
            (np.array(x, dtype=np.float64), np.array(y, dtype=np.float64))
            for x, y in zip(cal.x, cal.y, strict=True)
        ]

    def __call__(self, p: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of float64 raw ones `p`, shape (n, k)."""
        if self.method == "none":
            return p
        if p.shape[0] == 1:
            return np.array([self._row(p[0].tolist())])
        s = p if self.k > 2 else p[:, 1:]  # binary: the positive class only
        q: np.ndarray
        if self.method == "platt":
            q = 1.0 / (1.0 + np.exp(self.a * s + self.b))
        else:
            q = np.empty_like(s)
            for j, (xs, ys) in enumerate(self.xy):
                # interp returns ys[0] / ys[-1] beyond the ends: the same as clipping first
                q[:, j] = np.interp(s[:, j], xs, ys)
        if self.k == 2:
            return np.concatenate((1.0 - q, q), axis=1)
        total = q[:, 0] + q[:, 1]
        for j in range(2, self.k):
            total += q[:, j]
        total = total[:, None]
        if q.shape[0] == 0 or total.min() > 0.0:
            q /= total
            return q
        # some row sums to 0 or NaN: those rows are uniform
        uniform = np.full_like(q, 1.0 / self.k)
        return np.where(total > 0.0, q / np.where(total > 0.0, total, 1.0), uniform)

    def _row(self, p: list[float]) -> list[float]:
        s = p if self.k > 2 else p[1:]
        q: list[float]
        if self.method == "platt":
            z = np.array([a * v + b for (a, b), v in zip(self.ab, s, strict=True)])
            q = [1.0 / (1.0 + e) for e in np.exp(z).tolist()]
        else:
            q = [float(np.interp(v, xs, ys)) for v, (xs, ys) in zip(s, self.xy, strict=True)]
        if self.k == 2:
            return [1.0 - q[0], q[0]]
        total = q[0]
        for v in q[1:]:
            total += v
        if total > 0.0:
            return [v / total for v in q]
        return [1.0 / self.k] * self.k


def spec_json(spec: ModelSpec) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(msgspec.json.encode(spec))
    return out

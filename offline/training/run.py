"""`train()`: walk-forward evaluation of one model kind on a training-set parquet (the file
`cryptoflow offline dataset` writes, docs/features.md "Training-set file"), then the final
model trained the same way on the last `train` duration of data.

Usable rows: `~warmup`, the label and its `<label>_end_ts` not null; every symbol stacked and
sorted by (ts_event, symbol). Null features become NaN (the boosters' "missing"). Windows,
purging and the fit/valid/calib split: offline/training/walkforward.py. Per-fold metrics on each
test window: offline/training/metrics.py.

Feature importance: gain from the final model (normalized to sum 1); permutation importance
from the last fold's model on that fold's test window (out of sample: the final model has seen
that window), as the increase in calibrated log loss when one column is shuffled (seed per
column, fixed).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from offline.training import metrics as M
from offline.training.fit import Fitted, Params, fit_model
from offline.training.walkforward import (
    InnerSplit,
    WalkForward,
    Window,
    fold_rows,
    in_range,
    inner_split,
    parse_duration,
    parse_walk_forward,
    windows,
)
from operators.models.decision import ThresholdDecision
from operators.models.tree import CalibrationMethod, Kind, TreeModel

KINDS: tuple[str, ...] = ("xgboost", "lightgbm")
CALIBRATIONS: tuple[str, ...] = ("platt", "isotonic", "none")
# Fewest rows per slice before a window is refused (a fold of a handful of rows is noise).
MIN_ROWS = {"fit": 100, "valid": 20, "calib": 20, "test": 20}
DECISION_THRESHOLD = 0.55
PERMUTATION_SEED = 0
HORIZON_RES = (re.compile(r"^label_thr_(\d+)_"), re.compile(r"^tb_[^_]+_[^_]+_(\d+)(?:_|$)"))
LABEL_SUFFIXES = ("_label", "_binary")


@dataclass
class TrainResult:
    model: TreeModel
    folds: list[dict[str, Any]]
    summary: dict[str, float | None]  # mean of each fold metric
    importance: dict[str, dict[str, float]]  # "gain" | "permutation" -> column -> value
    training_window: dict[str, str]  # the final model's {"start", "end"} (ISO, end exclusive)
    data_fingerprint: str
    horizon: int | None
    timings: dict[str, float]
    kind: str = ""
    label: str = ""
    classes: tuple[int, ...] = ()
    calibration: str = "platt"
    walk_forward: str = ""
    embargo: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    rows: int = 0
    final_rows: dict[str, int] = field(default_factory=dict)


def iso(ns: int) -> str:
    t = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(ns) // 1000)
    return t.isoformat().replace("+00:00", "Z")


def _days(ns: int) -> str:
    return f"{ns / 86400e9:.3g} d"


# --------------------------------------------------------------------------- the data


def label_columns(columns: Sequence[str]) -> list[str]:
    """The dataset's label columns: each `<p>_end_ts` names label `<p>` (threshold, forward)
    or `<p>_label` / `<p>_binary` (triple barrier)."""
    cols = set(columns)
    out: list[str] = []
    for c in columns:
        if not c.endswith("_end_ts"):
            continue
        p = c[: -len("_end_ts")]
        out += [x for x in (p, *(p + s for s in LABEL_SUFFIXES)) if x in cols]
    return out


def end_ts_column(label: str, columns: Sequence[str]) -> str:
    cols = set(columns)
    if label not in cols or label not in label_columns(columns):
        known = ", ".join(label_columns(columns)) or "none"
        raise ValueError(f"unknown label {label!r}; the dataset's label columns: {known}")
    if f"{label}_end_ts" in cols:
        return f"{label}_end_ts"
    for s in LABEL_SUFFIXES:
        if label.endswith(s) and f"{label[: -len(s)]}_end_ts" in cols:
            return f"{label[: -len(s)]}_end_ts"
    raise ValueError(f"label {label!r} has no end-time column")  # unreachable by label_columns


def parse_horizon(label: str) -> int | None:
    """The `h` of a threshold (`label_thr_<h>_<thr>`) or triple-barrier (`tb_<pt>_<sl>_<h>...`)
    label name; None for other names."""
    for r in HORIZON_RES:
        m = r.match(label)
        if m:
            return int(m.group(1))
    return None


def _horizon_from_end(frame: pl.DataFrame, end_col: str) -> int | None:
    """Fallback: the largest `<label>_end` - row index within the symbol (h for fixed-horizon
    labels, the vertical barrier for triple barrier when any row reached it)."""
    if end_col not in frame.columns:
        return None
    d = frame.select(
        (pl.col(end_col) - pl.int_range(pl.len()).over("symbol")).max().alias("h")
    ).item()
    return int(d) if d is not None else None


@dataclass(frozen=True)
class Data:
    symbol: np.ndarray
    ts: np.ndarray  # int64 ns, sorted
    end_ts: np.ndarray
    close: np.ndarray
    x: np.ndarray  # float64, NaN = missing
    y: np.ndarray  # class index 0..k-1
    classes: tuple[int, ...]
    columns: list[str]
    feature_set: str
    feature_version: str
    horizon: int | None
    fingerprint: str


def load(dataset: Path, kind: str, label: str, features: Sequence[str] | None) -> Data:
    from offline.dataset import read_metadata

    if not Path(dataset).is_file():
        raise FileNotFoundError(f"{dataset}: no such dataset file (cryptoflow offline dataset)")
    meta = read_metadata(dataset)
    frame = pl.read_parquet(dataset)
    ds_cols = list(meta.get("feature_columns") or [])
    if not ds_cols:
        raise ValueError(f"{dataset}: no feature_columns in its metadata (not a dataset file?)")
    end_col = end_ts_column(label, frame.columns)
    cols = list(features) if features else ds_cols
    unknown = [c for c in cols if c not in ds_cols]
    if unknown:
        raise ValueError(f"--features {unknown} not in the dataset's {ds_cols}")
    if not frame.schema[label].is_integer():
        raise ValueError(
            f"label {label!r} is {frame.schema[label]}, not a class label; {kind} needs "
            + ("3 classes (threshold labels)" if kind == "xgboost" else "{0, 1} (*_binary)")
        )
    horizon = parse_horizon(label) or _horizon_from_end(frame, end_col.removesuffix("_ts"))
    fs = str(meta.get("feature_set") or frame["feature_set"][0])
    fv = str(meta.get("feature_version") or frame["feature_version"][0])
    used = frame.filter(
        ~pl.col("warmup") & pl.col(label).is_not_null() & pl.col(end_col).is_not_null()
    ).sort("ts_event", "symbol")
    if used.height == 0:
        raise ValueError(f"{dataset}: no usable rows (after warm-up, with {label} not null)")
    lab = used[label].to_numpy().astype(np.int64)
    classes = tuple(int(c) for c in np.unique(lab))
    if kind == "xgboost" and len(classes) != 3:
        raise ValueError(f"xgboost trains 3 classes; label {label!r} has values {list(classes)}")
    if kind == "lightgbm" and classes != (0, 1):
        raise ValueError(
            f"lightgbm trains a binary label in {{0, 1}}; {label!r} has values {list(classes)} "
            "(use a triple-barrier *_binary label)"
        )
    symbol = used["symbol"].to_numpy().astype(str)
    ts = used["ts_event"].dt.epoch("ns").to_numpy().astype(np.int64)
    end_ts = used[end_col].dt.epoch("ns").to_numpy().astype(np.int64)
    x = np.ascontiguousarray(used.select(pl.col(cols).cast(pl.Float64)).to_numpy(), np.float64)
    h = hashlib.sha256()
    h.update(("\0".join([label, *cols]) + "\n").encode())
    h.update("\0".join(symbol.tolist()).encode())
    for a in (ts, end_ts, x, lab):
        h.update(np.ascontiguousarray(a).tobytes())
    return Data(
        symbol,
        ts,
        end_ts,
        used["close"].to_numpy().astype(np.float64),
        x,
        np.searchsorted(np.array(classes), lab).astype(np.int64),
        classes,
        cols,
        fs,
        fv,
        horizon,
        h.hexdigest(),
    )


# --------------------------------------------------------------------------- folds


def _check_rows(
    where: str, split: InnerSplit, test: np.ndarray | None, k: int, y: np.ndarray
) -> None:
    sizes = {"fit": split.fit.size, "valid": split.valid.size, "calib": split.calib.size}
    if test is not None:
        sizes["test"] = test.size
    for name, n in sizes.items():
        if n < MIN_ROWS[name]:
            raise ValueError(
                f"{where}: the {name} slice has {n} usable rows, want >= {MIN_ROWS[name]} "
                f"(rows per slice: {sizes}); use a longer train=/test= or more data"
            )
    missing = [c for c in range(k) if not np.any(y[split.fit] == c)]
    if missing:
        raise ValueError(f"{where}: the fit slice lacks class index(es) {missing}")


def _balance(y: np.ndarray, classes: tuple[int, ...]) -> dict[str, float]:
    n = max(y.shape[0], 1)
    return {str(c): float(np.sum(y == i)) / n for i, c in enumerate(classes)}


def evaluate(
    data: Data, model: TreeModel, test: np.ndarray, fee_bps: float
) -> tuple[dict[str, float], np.ndarray]:
    """Metrics of `model` on rows `test` (the model's own feature columns, picked by name from
    the data's), and its probabilities."""
    cols = list(model.spec.feature_columns)
    if cols == data.columns:
        x = data.x[test]
    else:
        missing = [c for c in cols if c not in data.columns]
        if missing:
            raise ValueError(f"the model needs feature columns {missing} the dataset lacks")
        x = data.x[test][:, [data.columns.index(c) for c in cols]]
    proba = model.predict_proba(x)
    out = M.classification(data.y[test], proba)
    d = ThresholdDecision(data.classes, DECISION_THRESHOLD, DECISION_THRESHOLD).directions(proba)
    r, bpy = M.strategy_returns(data.symbol[test], data.ts[test], data.close[test], d, fee_bps)
    out["sharpe"] = M.sharpe(r, bpy)
    out["mean_return_bps"] = float(np.mean(r) * 1e4) if r.size else float("nan")
    out["exposure"] = float(np.mean(d != 0)) if d.size else float("nan")
    return out, proba


def train_fold(
    data: Data,
    w: Window,
    embargo_ns: int,
    fit_args: FitArgs,
    fee_bps: float,
) -> tuple[dict[str, Any], Fitted, np.ndarray]:
    t0 = time.perf_counter()
    kind, cal, params = fit_args
    rows = fold_rows(data.ts, data.end_ts, w, embargo_ns)
    cand = in_range(data.ts, w.train_start, w.test_start).size
    split = inner_split(data.ts, data.end_ts, rows.train, w.train_start, w.test_start, embargo_ns)
    where = (
        f"fold {w.fold} (train {iso(w.train_start)} .. {iso(w.test_start)}, "
        f"test .. {iso(w.test_end)})"
    )
    _check_rows(where, split, rows.test, len(data.classes), data.y)
    base = (data.columns, data.feature_set, data.feature_version)
    fitted = fit_model(kind, data.classes, data.x, data.y, split, base, cal, params)
    m, _ = evaluate(data, fitted.model, rows.test, fee_bps)
    _, v0, c0, _ = split.bounds
    used = split.fit.size + split.valid.size + split.calib.size
    info: dict[str, Any] = {
        "fold": w.fold,
        "train_start": iso(w.train_start),
        "valid_start": iso(v0),
        "calib_start": iso(c0),
        "test_start": iso(w.test_start),
        "test_end": iso(w.test_end),
        "rows": {
            "fit": int(split.fit.size),
            "valid": int(split.valid.size),
            "calib": int(split.calib.size),
            "test": int(rows.test.size),
            "purged": int(cand - used),
        },
        "best_iteration": fitted.best_iteration,
        "class_balance": {
            "fit": _balance(data.y[split.fit], data.classes),
            "test": _balance(data.y[rows.test], data.classes),
        },
        "metrics": m,
        "seconds": time.perf_counter() - t0,
    }
    return info, fitted, rows.test


def permutation_importance(
    data: Data, model: TreeModel, test: np.ndarray, seed: int = PERMUTATION_SEED
) -> dict[str, float]:
    x = data.x[test]
    y = data.y[test]
    base = M.log_loss(y, model.predict_proba(x))
    out: dict[str, float] = {}
    for j, c in enumerate(data.columns):
        xp = x.copy()
        xp[:, j] = np.random.default_rng(seed + j).permutation(xp[:, j])
        out[c] = M.log_loss(y, model.predict_proba(xp)) - base
    return out


def _summary(folds: list[dict[str, Any]]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key in folds[0]["metrics"]:
        vals = np.array([f["metrics"][key] for f in folds], dtype=np.float64)
        ok = vals[~np.isnan(vals)]
        out[key] = float(np.mean(ok)) if ok.size else None
    return out


FitArgs = tuple[Kind, CalibrationMethod, Params]


def plan_windows(data: Data, wf: WalkForward, hint: str = "") -> list[Window]:
    """The walk-forward windows over the data's usable rows; ValueError when none fits."""
    t0, t_end = int(data.ts[0]), int(data.ts[-1]) + 1
    wins = windows(t0, t_end, wf)
    if not wins:
        raise ValueError(
            f"no test window fits: usable data spans {iso(t0)} .. {iso(t_end)} "
            f"({_days(t_end - t0)}), walk-forward {wf.text!r} needs train + test = "
            f"{_days(wf.train_ns + wf.test_ns)}{hint}"
        )
    return wins


def fit_settings(kind: str, calibration: str, params: Params) -> FitArgs:
    """Checked (kind, calibration, params) for `train_fold` / `fit_model`."""
    if kind not in KINDS:
        raise ValueError(f"model kind {kind!r}: want one of {', '.join(KINDS)}")
    if calibration not in CALIBRATIONS:
        raise ValueError(f"calibration {calibration!r}: want one of {', '.join(CALIBRATIONS)}")
    if params.threads < 1 or params.n_estimators < 1:
        raise ValueError("threads and n_estimators must be >= 1")
    k: Kind = "xgboost" if kind == "xgboost" else "lightgbm"
    cal: CalibrationMethod = (
        "platt" if calibration == "platt" else "isotonic" if calibration == "isotonic" else "none"
    )
    return k, cal, params


def train(
    dataset: Path,
    kind: str,
    label: str,
    walk_forward: str,
    embargo: str,
    *,
    calibration: str = "platt",
    n_estimators: int = 300,
    threads: int = 1,
    features: Sequence[str] | None = None,
    fee_bps: float = 10.0,
    progress: bool = True,
    max_depth: int = 6,
    num_leaves: int = 31,
    learning_rate: float = 0.05,
    early_stopping_rounds: int = 30,
    seed: int = 0,
) -> TrainResult:
    """Walk-forward folds, then the final model on the last `train` duration of data."""
    t_start = time.perf_counter()
    params = Params(
        n_estimators, max_depth, num_leaves, learning_rate, early_stopping_rounds, threads, seed
    )
    fit_args = fit_settings(kind, calibration, params)
    k, cal, _ = fit_args
    wf: WalkForward = parse_walk_forward(walk_forward)
    embargo_ns = parse_duration(embargo, "embargo")
    data = load(Path(dataset), kind, label, features)
    t_load = time.perf_counter()
    wins = plan_windows(data, wf)
    t_end = int(data.ts[-1]) + 1
    folds: list[dict[str, Any]] = []
    last: tuple[Fitted, np.ndarray] | None = None
    with fold_progress(progress, len(wins), f"{kind} {label}") as step:
        for w in wins:
            info, fitted, test = train_fold(data, w, embargo_ns, fit_args, fee_bps)
            folds.append(info)
            last = (fitted, test)
            step(f"fold {w.fold}")
        t_folds = time.perf_counter()
        f_start = t_end - wf.train_ns
        rows = in_range(data.ts, f_start, t_end)
        split = inner_split(data.ts, data.end_ts, rows, f_start, t_end, embargo_ns)
        _check_rows(
            f"the final model ({iso(f_start)}..{iso(t_end)})",
            split,
            None,
            len(data.classes),
            data.y,
        )
        base = (data.columns, data.feature_set, data.feature_version)
        step("final model", advance=0)  # the bar counts folds; the final fit is shown only
        final = fit_model(k, data.classes, data.x, data.y, split, base, cal, params)
    t_final = time.perf_counter()
    assert last is not None
    perm = permutation_importance(data, last[0].model, last[1])
    importance = {"gain": final.gain, "permutation": perm}
    t_imp = time.perf_counter()
    secs = [f["seconds"] for f in folds]
    return TrainResult(
        model=final.model,
        folds=folds,
        summary=_summary(folds),
        importance=importance,
        training_window={"start": iso(f_start), "end": iso(t_end)},
        data_fingerprint=data.fingerprint,
        horizon=data.horizon,
        timings={
            "load_s": t_load - t_start,
            "folds_s": t_folds - t_load,
            "fold_mean_s": float(np.mean(secs)),
            "final_s": t_final - t_folds,
            "importance_s": t_imp - t_final,
            "total_s": t_imp - t_start,
        },
        kind=kind,
        label=label,
        classes=data.classes,
        calibration=calibration,
        walk_forward=walk_forward,
        embargo=embargo,
        params=params.as_dict(),
        rows=int(data.ts.size),
        final_rows={
            "fit": int(split.fit.size),
            "valid": int(split.valid.size),
            "calib": int(split.calib.size),
            "best_iteration": final.best_iteration,
        },
    )


class fold_progress:
    """A rich progress bar, one step per fold (the final model's fit is named, not counted);
    a no-op when off."""

    def __init__(self, on: bool, total: int, title: str) -> None:
        self.on, self.total, self.title = on, total, title
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Any:
        if self.on:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            self._bar = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                transient=True,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(f"training {self.title}", total=self.total)

        def step(what: str, advance: int = 1) -> None:
            if self._bar is not None:
                done = "done" if advance else "..."
                self._bar.update(
                    self._task, advance=advance, description=f"{self.title}: {what} {done}"
                )

        return step

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

"""`retrain()`: champion/challenger retraining of one registry model on the latest data.

The champion is the promoted version of the model. Its meta.json (written by `offline train`)
gives the training settings -- kind, label, calibration, booster params, walk-forward durations,
embargo -- and its spec the feature columns and feature-set version; the dataset defaults to the
one it was trained on (a scheduler rebuilds that file with newer bars, or passes another).

Evaluation window E: the last `test` duration of the dataset's usable rows (`--eval-window`
overrides `test`), [t_end - test, t_end) with t_end = the last usable ts + 1 ns. The challenger
is trained exactly like one walk-forward fold: on the `train` duration just before E, purged
against E, with the fit/valid/calib split inside it (offline/training/walkforward.py); the
champion is scored on the same rows of E with the same fee. The challenger wins only if it is
better on the configured metric (`[models] champion_metric`; lower is better for log_loss,
brier, ece, higher for auc, accuracy, sharpe) by more than `[models] min_improvement`; an
undefined (NaN) metric on either side never promotes. The promoted model is the one that was
evaluated (trained through E's start), so the next retrain can again find an unseen window.

Why E must be out of sample for the champion: if the champion was trained on any part of E, its
metrics there are in-sample and flattering, and a challenger that generalizes better would be
rejected. So when the champion's training window ends after E's start, nothing is trained and
nothing is registered ("skipped"): a daily cron job stays safe and quiet until the dataset holds
a full `test` of data after the champion's training end.

Every challenger that is trained is registered (a lost attempt stays auditable: a `retrain`
block in its meta.json names the champion, E, both sides' metrics and the decision); only a
winner is promoted; a dry run writes nothing. Training is deterministic, so the same data and
window would train the same challenger again: when the champion won this very window, or a
challenger already lost to it there under the same metric and min_improvement, the run is
skipped too (a scheduler running more often than the dataset is rebuilt registers nothing).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from offline.registry.store import (
    PROMOTE_HINT,
    ModelVersion,
    RegistryError,
    promote,
    register,
    versions,
)
from offline.registry.store import promoted as promoted_version

METRICS: tuple[str, ...] = ("log_loss", "brier", "ece", "auc", "accuracy", "sharpe")
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "ece"})
# What `offline train` writes that a retrain needs from the champion's meta.json.
SETTINGS = ("kind", "label", "calibration", "params", "walk_forward", "embargo")
DAY_NS = 86400 * 10**9
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class RetrainResult:
    name: str
    champion: str  # the promoted version at the start, "v<N>"
    metric: str
    min_improvement: float
    dataset: str
    eval_window: dict[str, str]  # {"start", "end"} ISO, end exclusive
    skipped: str | None = None  # why nothing was trained (E seen by the champion, or tried)
    challenger: str | None = None  # the registered version; None when skipped or a dry run
    promoted: bool = False
    reason: str = ""
    champion_metrics: dict[str, Any] = field(default_factory=dict)
    challenger_metrics: dict[str, Any] = field(default_factory=dict)
    training_window: dict[str, str] = field(default_factory=dict)  # the challenger's
    fold: dict[str, Any] = field(default_factory=dict)  # the challenger's fold record
    dry_run: bool = False
    seconds: float = 0.0


def iso_ns(text: str) -> int:
    """An ISO time as `iso()` writes it ("...Z") -> int ns since the epoch (UTC)."""
    t = datetime.fromisoformat(text)
    if t.tzinfo is None:
        raise ValueError(f"time {text!r} has no zone; want UTC (...Z)")
    return (t - EPOCH) // timedelta(microseconds=1) * 1000


def decide(
    metric: str, champion: float | None, challenger: float | None, min_improvement: float
) -> tuple[bool, str]:
    """(challenger wins, why): strictly better by more than `min_improvement` in the metric's
    direction; an undefined value on either side is no promotion."""
    for side, v in (("champion", champion), ("challenger", challenger)):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return False, f"the {side}'s {metric} on the evaluation window is undefined"
    assert champion is not None and challenger is not None
    lower = metric in LOWER_IS_BETTER
    gain = champion - challenger if lower else challenger - champion
    rel = "<" if challenger < champion else ">" if challenger > champion else "="
    text = (
        f"{metric} {challenger:.6g} (challenger) {rel} {champion:.6g} (champion), "
        f"{'lower' if lower else 'higher'} is better: improvement {gain:.6g}"
    )
    if gain > min_improvement:
        return True, f"{text} > min_improvement {min_improvement:g}"
    return False, f"{text} <= min_improvement {min_improvement:g}"


def retrain(
    root: Path,
    name: str,
    *,
    dataset: Path | str | None = None,
    metric: str = "log_loss",
    min_improvement: float = 0.0,
    eval_window: str | None = None,
    fee_bps: float = 10.0,
    dry_run: bool = False,
    progress: bool = True,
) -> RetrainResult:
    """Train a challenger to `name`'s promoted champion on the latest window and promote it if
    it beats the champion on the same out-of-sample window (module docstring)."""
    from offline.dataset import read_metadata
    from offline.training.fit import Params
    from offline.training.run import evaluate, fit_settings, iso, load, train_fold
    from offline.training.walkforward import Window, parse_duration, parse_walk_forward

    t0 = time.perf_counter()
    if metric not in METRICS:
        raise ValueError(f"metric {metric!r}: want one of {', '.join(METRICS)}")
    if not (min_improvement >= 0 and math.isfinite(min_improvement)):
        raise ValueError(f"min_improvement {min_improvement}: want a number >= 0")
    champ = _champion(root, name)
    meta = champ.meta
    where = f"{name} {champ.version} ({champ.path / 'meta.json'})"
    lacking = [k for k in (*SETTINGS, "training_window") if k not in meta]
    if lacking:
        raise RegistryError(
            f"{where} lacks {', '.join(lacking)}: retrain repeats an `offline train` run and "
            "needs its settings; train the model with `cryptoflow offline train`"
        )
    if dataset is None and not meta.get("dataset"):
        raise RegistryError(f"{where} names no dataset; pass --dataset")
    path = Path(dataset if dataset is not None else meta["dataset"])
    kind, label = str(meta["kind"]), str(meta["label"])
    try:
        params = Params(**meta["params"])
    except TypeError as exc:
        raise RegistryError(
            f"{where}: params {meta['params']} are not training params ({exc})"
        ) from None
    fit_args = fit_settings(kind, str(meta["calibration"]), params)
    wf = parse_walk_forward(str(meta["walk_forward"]))
    embargo_ns = parse_duration(str(meta["embargo"]), "embargo")
    test_ns = parse_duration(eval_window, "--eval-window") if eval_window else wf.test_ns
    if test_ns <= 0:
        raise ValueError(f"--eval-window {eval_window!r} must be > 0")
    parts = dict(i.strip().split("=", 1) for i in str(meta["walk_forward"]).split(","))
    test_text = eval_window or parts["test"].strip()
    champ_end = iso_ns(str(meta["training_window"]["end"]))

    with _status(progress, f"{name}: loading {path.name}") as say:
        model = champ.load()
        spec = model.spec
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such dataset file (cryptoflow offline dataset)")
        _check_version(path, read_metadata(path).get("feature_version"), where, spec)
        data = load(path, kind, label, list(spec.feature_columns))
        _check_version(path, data.feature_version, where, spec)
        t_end = int(data.ts[-1]) + 1
        e_start = t_end - test_ns
        window = {"start": iso(e_start), "end": iso(t_end)}
        result = RetrainResult(
            name, champ.version, metric, min_improvement, str(path), window, dry_run=dry_run
        )
        if champ_end > e_start:
            result.skipped = (
                f"skipped: the champion {champ.version} was trained through "
                f"{meta['training_window']['end']}; the dataset holds only "
                f"{max(t_end - champ_end, 0) / DAY_NS:.2f} days after that, evaluation needs "
                f"{test_text}"
            )
        else:
            result.skipped = _tried(root, champ, window, data.fingerprint, metric, min_improvement)
        if result.skipped:
            result.reason = result.skipped
            result.seconds = time.perf_counter() - t0
            return result
        t_start = e_start - wf.train_ns
        if t_start < int(data.ts[0]):
            raise ValueError(
                f"{path}: usable data spans {iso(int(data.ts[0]))} .. {iso(t_end)}; the "
                f"challenger needs train + evaluation = {(wf.train_ns + test_ns) / DAY_NS:.3g} d"
            )
        say(f"{name}: training the challenger on {iso(t_start)} .. {iso(e_start)}")
        w = Window(0, t_start, e_start, t_end)
        info, fitted, rows = train_fold(data, w, embargo_ns, fit_args, fee_bps)
        say(f"{name}: scoring the champion {champ.version} on the evaluation window")
        champ_m, _ = evaluate(data, model, rows, fee_bps)

    result.champion_metrics = _json(champ_m)
    result.challenger_metrics = _json(info["metrics"])
    result.fold = _json(info)
    result.training_window = {"start": iso(t_start), "end": iso(e_start)}
    result.promoted, result.reason = decide(
        metric,
        result.champion_metrics.get(metric),
        result.challenger_metrics.get(metric),
        min_improvement,
    )
    result.seconds = time.perf_counter() - t0
    if dry_run:
        return result
    new_meta: dict[str, Any] = {
        "kind": kind,
        "label": label,
        "horizon": data.horizon,
        "training_window": result.training_window,
        "data_fingerprint": data.fingerprint,
        "dataset": str(path),
        "walk_forward": meta["walk_forward"],
        "embargo": meta["embargo"],
        "params": params.as_dict(),
        "calibration": meta["calibration"],
        "folds": [result.fold],
        "metrics": result.challenger_metrics,
        "feature_importance": {"gain": _json(fitted.gain)},
        "timings": {"total_s": result.seconds},
        "retrain": {
            "champion": champ.version,
            "eval_window": window,
            "metric": metric,
            "min_improvement": min_improvement,
            "fee_bps": fee_bps,
            "champion_metrics": result.champion_metrics,
            "challenger_metrics": result.challenger_metrics,
            "promoted": result.promoted,
            "reason": result.reason,
        },
    }
    mv = register(root, name, fitted.model, new_meta)
    result.challenger = mv.version
    if result.promoted:
        promote(root, name, mv.version)
    return result


# --------------------------------------------------------------------------- helpers


def _champion(root: Path, name: str) -> ModelVersion:
    champ = promoted_version(root, name)  # raises for an unknown name
    if champ is None:
        known = [mv.version for mv in versions(root, name)]
        raise RegistryError(
            f"model {name!r} has no promoted version in {root}, so there is no champion to "
            f"retrain against; run `{PROMOTE_HINT}` first, e.g. `cryptoflow models promote "
            f"{name} {known[-1]}` (versions: {', '.join(known)})"
        )
    return champ


def _tried(
    root: Path,
    champ: ModelVersion,
    window: dict[str, str],
    fingerprint: str,
    metric: str,
    min_improvement: float,
) -> str | None:
    """Why this attempt was made already, or None. The same data and window train the same
    challenger (training is deterministic): the champion won this very window, or an earlier
    challenger lost to this champion on it with the same rule; retraining would only register
    a duplicate."""
    same = f"the same evaluation window ({window['start']} .. {window['end']}) and data"
    rt = champ.meta.get("retrain") or {}
    if rt.get("eval_window") == window and champ.meta.get("data_fingerprint") == fingerprint:
        return (
            f"skipped: the champion {champ.version} won {same} against {rt.get('champion')}; "
            "waiting for new data"
        )
    for mv in reversed(versions(root, champ.name)):
        rt = mv.meta.get("retrain") or {}
        if (
            rt.get("champion") == champ.version
            and rt.get("eval_window") == window
            and mv.meta.get("data_fingerprint") == fingerprint
            and rt.get("metric") == metric
            and rt.get("min_improvement") == min_improvement
        ):
            return (
                f"skipped: {mv.version} was already compared with the champion {champ.version} "
                f"on {same} by {metric} (not promoted); waiting for new data"
            )
    return None


def _check_version(path: Path, got: Any, where: str, spec: Any) -> None:
    if got is not None and str(got) != spec.feature_version:
        raise RegistryError(
            f"{path}: the dataset's feature_version {got} differs from the champion {where}'s "
            f"{spec.feature_version} (feature set {spec.feature_set!r}): the features would not "
            "mean what the model learned; build the dataset with the champion's feature set"
        )


def _json(value: Any) -> Any:
    """NaN/inf as null, numpy scalars as Python numbers: meta must be plain JSON."""
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@contextlib.contextmanager
def _status(on: bool, text: str) -> Iterator[Callable[[str], None]]:
    """A rich spinner on stderr with the current step; a no-op when off."""
    if not on:
        yield lambda _text: None
        return
    from rich.console import Console

    with Console(stderr=True).status(text) as status:
        yield lambda t: status.update(t)

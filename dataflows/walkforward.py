"""`cryptoflow backtest --walk-forward`: the honest backtest of a model.

1. A training set is built by replaying the backtest's own source and range through the feature
   flow (`offline dataset`, the trading producer's `[producers.train] label`), so the features a
   model is trained on are the ones the replay computes, row for row.
2. Walk-forward windows over it (offline/training/walkforward.py): window k trains on
   [test_start_k - train, test_start_k), purged of labels that reach into the test window, and
   registers its model as v<k+1> in a registry scoped to the run (`<out>/registry`, replaced on
   a rerun).
3. One replay of the whole range through `build_flow` with the trading producer scheduled:
   version k scores the bars from test_start_k until the next window starts (the last one to
   its test end, where the replay stops); bars before the first test window warm the features
   and trade nothing. One account carries positions across windows, so the concatenated
   out-of-sample equity curve is a single continuous account, not stitched results.
4. The report: that curve from the first test start, per-window trading statistics and the
   window's classification metrics, in `<out>/walk_forward.{json,csv,png}`.

The run's config (stored in `runs`) names each window's version and model sha256, so the run id
follows the models; a rerun that trains the same bytes replaces its own rows.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from dataflows.backtest import BacktestSpec, plan_file_replay, run_backtest
from dataflows.flow import config_feature_set
from operators.performance import Summary, summarize
from schemas.config import Config, ProducerConfig
from schemas.producer_config import ScheduleEntry, TrainConfig


@dataclass(frozen=True)
class WalkForwardResult:
    run_id: str
    windows: list[dict[str, Any]]
    summary: Summary  # the out-of-sample curve (from the first test start)
    registry: Path
    dataset: Path


def trading_producer(cfg: Config) -> ProducerConfig:
    """The producer that trades; it must be a model with a `[producers.train]` table."""
    name = cfg.strategy.producer
    p = next((q for q in cfg.producers if q.name == name), None) if name else None
    if p is None or p.kind != "model":
        raise ValueError(
            "--walk-forward trains the trading producer's model per window: set [strategy] "
            'producer to a [[producers]] entry with kind = "model" (examples/xgb_trend_1m.toml)'
        )
    if p.train is None:
        raise ValueError(
            f"--walk-forward: producer {p.name!r} has no [producers.train] table; add one "
            'naming kind = "xgboost"|"lightgbm" and label = "<label spec>" '
            "(examples/xgb_trend_1m.toml)"
        )
    return p


def target_column(t: TrainConfig) -> str:
    """The label column trained on (see TrainConfig.target)."""
    from offline.labels.spec import parse_label

    if t.target:
        return t.target
    spec = parse_label(t.label)
    if spec.family == "forward":
        raise ValueError(
            f"[producers.train] label {t.label!r}: forward returns are no class label; use a "
            "threshold or triple_barrier spec"
        )
    prefix = spec.prefixes[0]
    if spec.family == "threshold":
        return prefix
    return prefix + ("_binary" if t.kind == "lightgbm" else "_label")


def _dataset(
    cfg: Config, spec: BacktestSpec, t: TrainConfig, path: Path, console: Console, progress: bool
) -> None:
    from offline.dataset import DatasetSpec, build_dataset

    ds = DatasetSpec(
        spec.source,
        spec.symbols,
        cfg.features.set,
        (t.label,),
        path,
        spec.start_ns,
        spec.end_ns,
        workers=spec.workers,
        store=False,
    )
    build_dataset(cfg, ds, console, progress)


def _check_dataset(cfg: Config, path: Path) -> None:
    from offline.dataset import read_metadata

    if not path.is_file():
        raise FileNotFoundError(f"--dataset {path}: no such file (cryptoflow offline dataset)")
    got = str(read_metadata(path).get("feature_version"))
    want = config_feature_set(cfg).version
    if got != want:
        raise ValueError(
            f"--dataset {path} holds feature set version {got}, the config runs {want}: "
            "rebuild it with the config's [features] set (or drop --dataset to build it)"
        )


def train_windows(
    cfg: Config,
    p: ProducerConfig,
    dataset: Path,
    walk_forward: str,
    embargo: str,
    root: Path,
    progress: bool,
) -> tuple[list[dict[str, Any]], list[ScheduleEntry], int]:
    """One model per window into `root` -> (window infos, the schedule, the last test end)."""
    from dataflows.cli_train import _json
    from offline import registry
    from offline.training.fit import Params
    from offline.training.run import (
        fit_settings,
        fold_progress,
        iso,
        load,
        plan_windows,
        train_fold,
    )
    from offline.training.walkforward import parse_duration, parse_walk_forward

    t = p.train
    assert t is not None
    params = Params(
        t.n_estimators,
        t.max_depth,
        t.num_leaves,
        t.learning_rate,
        t.early_stopping_rounds,
        t.threads,
        t.seed,
    )
    fit_args = fit_settings(t.kind, t.calibration, params)
    wf = parse_walk_forward(walk_forward)
    embargo_ns = parse_duration(embargo, "embargo")
    target = target_column(t)
    data = load(dataset, t.kind, target, None)
    wins = plan_windows(data, wf, "; use a shorter train=/test= or a longer --start/--end")
    if root.exists():
        shutil.rmtree(root)  # run-scoped: a rerun trains its own versions from v1
    infos: list[dict[str, Any]] = []
    schedule: list[ScheduleEntry] = []
    with fold_progress(progress, len(wins), f"walk-forward {t.kind} {target}") as step:
        for w in wins:
            info, fitted, _ = train_fold(data, w, embargo_ns, fit_args, t.fee_bps)
            meta = {
                "kind": t.kind,
                "label": target,
                "label_spec": t.label,
                "horizon": data.horizon,
                "training_window": {"start": iso(w.train_start), "end": iso(w.test_start)},
                "data_fingerprint": data.fingerprint,
                "dataset": str(dataset),
                "walk_forward": walk_forward,
                "embargo": embargo,
                "params": params.as_dict(),
                "calibration": t.calibration,
                "folds": [info],
                "metrics": info["metrics"],
            }
            mv = registry.register(root, p.model, fitted.model, _json(meta))
            schedule.append(
                ScheduleEntry(
                    start=w.test_start, version=mv.version, sha256=str(mv.meta["model_sha256"])
                )
            )
            infos.append({**info, "version": mv.version})
            step(f"window {w.fold}")
    return infos, schedule, wins[-1].test_end


def _window_stats(
    ts: np.ndarray, eq: np.ndarray, fills: list[Any], lo: int, hi: int, before: float
) -> Summary:
    m = (ts >= lo) & (ts < hi)
    inside = [f for f in fills if lo <= f.ts_event < hi]
    return summarize(ts[m], eq[m], inside, before)


def _equity_before(ts: np.ndarray, eq: np.ndarray, at: int, initial: float) -> float:
    i = int(np.searchsorted(ts, at, side="left"))
    return float(eq[i - 1]) if i > 0 else initial


def run_walk_forward(
    cfg: Config,
    spec: BacktestSpec,
    out_dir: Path,
    walk_forward: str,
    embargo: str = "0",
    *,
    dataset: Path | None = None,
    console: Console | None = None,
    progress: bool = True,
) -> WalkForwardResult:
    from dataflows.report import account_initial, build_report, load_run
    from infra.clickhouse import connect

    console = console or Console(stderr=True)
    spec.scheme  # noqa: B018  (validates the source string)
    p = trading_producer(cfg)
    assert p.train is not None
    from offline.training.walkforward import parse_duration, parse_walk_forward

    # Bad requests fail before the training set's replay.
    target_column(p.train)
    parse_walk_forward(walk_forward)
    parse_duration(embargo, "embargo")
    if spec.scheme == "file":  # what the replay will read, before the training set is built
        plan = plan_file_replay(spec, cfg)
        spec = plan.spec
        if plan.absent:
            console.print(
                f"note: {spec.source} holds no bars of the config's {', '.join(plan.absent)}; "
                f"training and replaying {', '.join(spec.symbols)} only",
                markup=False,
                highlight=False,
            )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if dataset is None:
        dataset = out_dir / "dataset.parquet"
        _dataset(cfg, spec, p.train, dataset, console, progress)
    else:
        _check_dataset(cfg, Path(dataset))
    root = (out_dir / "registry").resolve()
    infos, schedule, last_end = train_windows(
        cfg, p, Path(dataset), walk_forward, embargo, root, progress
    )
    scheduled = p.model_copy(update={"version": schedule[0].version, "schedule": tuple(schedule)})
    cfg = cfg.model_copy(
        update={
            "producers": [scheduled if q.name == p.name else q for q in cfg.producers],
            "models": cfg.models.model_copy(update={"registry": str(root)}),
        }
    )
    end = last_end if spec.end_ns is None else min(spec.end_ns, last_end)
    spec = dataclasses.replace(spec, end_ns=end)
    run_id, _ = run_backtest(cfg, spec, out_dir, console=console, progress=progress)

    ch = cfg.clickhouse
    fills, equity = load_run(connect(ch.dsn, ch.database), ch.database, run_id)
    initial = account_initial(cfg)
    _, ts, eq = build_report(fills, equity, initial)
    cash = sum(initial.values())
    first = schedule[0].start
    oos = _window_stats(ts, eq, fills, first, end, _equity_before(ts, eq, first, cash))
    bounds = [e.start for e in schedule[1:]] + [end]
    windows: list[dict[str, Any]] = []
    for info, e, hi in zip(infos, schedule, bounds, strict=True):
        s = _window_stats(ts, eq, fills, e.start, hi, _equity_before(ts, eq, e.start, cash))
        windows.append(
            {**info, "active_end_ns": hi, "active_start_ns": e.start, "trading": s.to_dict()}
        )
    result = WalkForwardResult(run_id, windows, oos, root, Path(dataset))
    write_report(out_dir, result, walk_forward, embargo, ts, eq, first)
    print_report(result, Console())
    return result


def write_report(
    out_dir: Path,
    r: WalkForwardResult,
    walk_forward: str,
    embargo: str,
    ts: np.ndarray,
    eq: np.ndarray,
    first: int,
) -> None:
    from dataflows.cli_train import _json

    doc = {
        "run_id": r.run_id,
        "walk_forward": walk_forward,
        "embargo": embargo,
        "registry": str(r.registry),
        "dataset": str(r.dataset),
        "out_of_sample": r.summary.to_dict(),
        "windows": r.windows,
    }
    (out_dir / "walk_forward.json").write_text(json.dumps(_json(doc), indent=2) + "\n")
    with (out_dir / "walk_forward.csv").open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        keys = ("total_return", "sharpe", "max_drawdown", "n_trades", "fees")
        mkeys = ("accuracy", "log_loss", "auc", "brier", "ece")
        w.writerow(["window", "version", "test_start", "test_end", *keys, *mkeys])
        for x in r.windows:
            w.writerow(
                [x["fold"], x["version"], x["test_start"], x["test_end"]]
                + [x["trading"][k] for k in keys]
                + [x["metrics"].get(k) for k in mkeys]
            )
    from dataflows.report import _plot

    m = ts >= first
    _plot(
        out_dir / "walk_forward.png",
        ts[m],
        eq[m],
        "walk-forward, out of sample (dashed: a new window's model)",
        marks=[x["active_start_ns"] for x in r.windows],
    )


def _f(v: Any, spec: str) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    return format(v, spec)


def print_report(r: WalkForwardResult, console: Console) -> None:
    t = Table(title=f"walk-forward, out of sample: {len(r.windows)} windows (run {r.run_id})")
    for h in (
        "window",
        "version",
        "test window (UTC)",
        "return",
        "sharpe",
        "max dd",
        "fills",
        "acc",
        "log loss",
        "auc",
    ):
        t.add_column(h, no_wrap=True, justify="left" if h.startswith("test") else "right")
    for x in r.windows:
        s, m = x["trading"], x["metrics"]
        t.add_row(
            str(x["fold"]),
            x["version"],
            f"{x['test_start'][:16]} .. {x['test_end'][:16]}",
            _f(s["total_return"], "+.2%"),
            _f(s["sharpe"], ".2f"),
            _f(s["max_drawdown"], ".2%"),
            str(s["n_trades"]),
            _f(m.get("accuracy"), ".3f"),
            _f(m.get("log_loss"), ".3f"),
            _f(m.get("auc"), ".3f"),
        )
    s = r.summary
    t.add_row(
        "all",
        "",
        "",
        _f(s.total_return, "+.2%"),
        _f(s.sharpe, ".2f"),
        _f(s.max_drawdown, ".2%"),
        str(s.n_trades),
        "",
        "",
        "",
    )
    console.print(t)
    console.print(
        f"models: {r.registry} (one version per window); training set: {r.dataset}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )

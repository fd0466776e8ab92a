"""`cryptoflow offline train xgboost|lightgbm`: walk-forward training (offline/training/) of a
model on a training-set parquet, the final model registered (offline/registry/), optionally
promoted, and mirrored into ClickHouse's `models` table."""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path
from typing import Any

from rich.table import Table

from dataflows.cli_common import _cfg, _console
from dataflows.producers import registry_root


def default_name(kind: str, label: str) -> str:
    """ "<kind>-<label>", lower-cased, anything outside [a-z0-9_.-] as "-"."""
    return re.sub(r"[^a-z0-9_.-]+", "-", f"{kind}-{label}".lower()).strip("-")


def _json(value: Any) -> Any:
    """NaN/inf (an AUC with one class in a window) as null: meta must be plain JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return value


def train_meta(res: Any, dataset: Path) -> dict[str, Any]:
    """The registry meta of a TrainResult."""
    meta = {
        "label": res.label,
        "kind": res.kind,
        "horizon": res.horizon,
        "training_window": res.training_window,
        "data_fingerprint": res.data_fingerprint,
        "dataset": str(dataset),
        "walk_forward": res.walk_forward,
        "embargo": res.embargo,
        "params": res.params,
        "folds": res.folds,
        "metrics": res.summary,
        "feature_importance": res.importance,
        "calibration": res.calibration,
        "timings": res.timings,
    }
    out: dict[str, Any] = _json(meta)
    return out


def _fmt(v: Any, spec: str = ".4f") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def fold_table(res: Any) -> Table:
    t = Table(title=f"{res.kind} on {res.label}: {len(res.folds)} walk-forward folds")
    heads = ["fold", "test window (UTC)", "fit/valid/calib/test", "best it"]
    heads += ["acc", "log loss", "auc", "brier", "ece", "sharpe", "s"]
    for h in heads:
        t.add_column(h, no_wrap=True, justify="left" if h.startswith("test") else "right")
    for f in res.folds:
        m, r = f["metrics"], f["rows"]
        t.add_row(
            str(f["fold"]),
            f"{f['test_start'][:16]} .. {f['test_end'][:16]}",
            f"{r['fit']}/{r['valid']}/{r['calib']}/{r['test']}",
            str(f["best_iteration"]),
            *(_fmt(m[k]) for k in ("accuracy", "log_loss", "auc", "brier", "ece")),
            _fmt(m["sharpe"], ".2f"),
            _fmt(f["seconds"], ".1f"),
        )
    s = res.summary
    t.add_row(
        "mean",
        "",
        "",
        "",
        *(_fmt(s.get(k)) for k in ("accuracy", "log_loss", "auc", "brier", "ece")),
        _fmt(s.get("sharpe"), ".2f"),
        _fmt(res.timings.get("fold_mean_s"), ".1f"),
    )
    return t


def cmd_train(args: argparse.Namespace) -> int:
    from infra.clickhouse import connect
    from offline import registry
    from offline.registry.store import check_name
    from offline.training import train

    cfg = _cfg(args)
    name = check_name(args.name or default_name(args.kind, args.label))
    root = Path(args.out) if args.out else registry_root(cfg)
    features = [c.strip() for c in args.features.split(",") if c.strip()] if args.features else None
    dataset = Path(args.dataset)
    res = train(
        dataset,
        args.kind,
        args.label,
        args.walk_forward,
        args.embargo,
        calibration=args.calibration,
        n_estimators=args.n_estimators,
        threads=args.threads,
        features=features,
        fee_bps=args.fee_bps,
        progress=not args.no_progress,
    )
    console = _console()
    console.print(fold_table(res))
    mv = registry.register(root, name, res.model, train_meta(res, dataset))
    console.print(
        f"registered [bold]{mv.name} {mv.version}[/] -> {mv.path} (final model trained on "
        f"{res.training_window['start']} .. {res.training_window['end']}, "
        f"{res.timings['total_s']:.1f} s in all)",
        soft_wrap=True,
    )
    if args.promote:
        registry.promote(root, mv.name, mv.version)
        console.print(f"{mv.name}: [bold]{mv.version}[/] promoted")
    ch = cfg.clickhouse
    n = registry.sync_clickhouse(root, connect(ch.dsn, ch.database), ch.database, mv.name)
    console.print(f"{n} rows written to {ch.database}.models")
    return 0


def add_train_verb(osub: Any) -> None:
    """Register `offline train` under the `offline` verb's sub-parsers."""
    from dataflows.cli import _verb  # at call time: dataflows.cli is loaded by then

    t = _verb(
        osub,
        "train",
        "walk-forward train a tree classifier on a training set and register the final model",
        "cryptoflow offline train xgboost --dataset out/jan.parquet "
        "--label label_thr_10_0p002 --walk-forward train=180d,test=30d,step=30d --embargo 1h",
    )
    t.add_argument("kind", choices=("xgboost", "lightgbm"), help="3-class xgboost | binary lgb")
    t.add_argument("--dataset", required=True, help="training-set parquet (offline dataset)")
    t.add_argument("--label", required=True, help="label column, e.g. label_thr_10_0p002")
    t.add_argument(
        "--walk-forward",
        required=True,
        help="window durations (units m|h|d): train=180d,test=30d[,step=30d]",
    )
    t.add_argument("--embargo", required=True, help="embargo after each test window: 1h, 0")
    t.add_argument(
        "--out",
        help="model registry root (default: config models.registry, else "
        "$CRYPTOFLOW_REGISTRY, else <data dir>/registry)",
    )
    t.add_argument("--name", help='registry name (default: "<kind>-<label>", lower-cased)')
    t.add_argument(
        "--calibration", choices=("platt", "isotonic", "none"), default="platt", help="calibration"
    )
    t.add_argument("--n-estimators", type=int, default=300, help="most boosting rounds")
    t.add_argument("--threads", type=int, default=1, help="booster threads")
    t.add_argument("--features", help="comma-separated subset of the dataset's feature columns")
    t.add_argument("--fee-bps", type=float, default=10.0, help="fee per unit of turnover, bps")
    t.add_argument("--promote", action="store_true", help="promote the registered version")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--config", help="TOML config file (default: the built-in defaults)")
    t.add_argument(
        "--set",
        action="append",
        metavar="SECTION.KEY=VALUE",
        help="override one config field, repeatable (TOML value), e.g. --set clickhouse.database=x",
    )
    t.set_defaults(fn=cmd_train)

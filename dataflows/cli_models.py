"""`cryptoflow models list | show | promote | diff | retrain`: the model registry
(offline/registry/); `retrain` is champion/challenger retraining (offline/registry/retrain.py)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from dataflows.cli_common import _cfg, _console
from dataflows.producers import registry_root
from offline import registry
from offline.registry import MISSING, ModelVersion
from offline.registry.retrain import METRICS as RETRAIN_METRICS

# The headline metric of `list`: the first of these found in meta["metrics"] (flattened).
HEADLINE = ("log_loss", "auc", "brier", "accuracy")
VALUE_WIDTH = 60
# The rows of `retrain`'s table (the metrics `evaluate()` reports).
RETRAIN_ROWS = ("log_loss", "brier", "ece", "auc", "accuracy", "sharpe", "mean_return_bps")


def _root(args: argparse.Namespace) -> tuple[Path, Any]:
    cfg = _cfg(args)
    if args.registry:
        return Path(args.registry), cfg
    return registry_root(cfg), cfg


def _time(ns: Any) -> str:
    if not isinstance(ns, int) or ns <= 0:
        return "-"
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _text(v: Any, width: int = VALUE_WIDTH) -> str:
    if v is MISSING:
        return "-"
    s = v if isinstance(v, str) else json.dumps(v)
    return s if len(s) <= width else s[: width - 3] + "..."


def headline(meta: dict[str, Any]) -> str:
    """One summary metric, `key value`, or "-" (meta has no `metrics`)."""
    metrics = meta.get("metrics")
    if not isinstance(metrics, dict):
        return "-"
    flat = {
        k: v
        for k, v in registry.flatten(metrics).items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
    for want in HEADLINE:
        # "log_loss" itself, else a mean of it (log_loss.mean, mean_log_loss, ...)
        hits = sorted(k for k in flat if want in k)
        best = next((k for k in hits if k == want), None) or next(
            (k for k in hits if "mean" in k), hits[0] if hits else None
        )
        if best is not None:
            return f"{best} {flat[best]:.4g}"
    if flat:
        k = sorted(flat)[0]
        return f"{k} {flat[k]:.4g}"
    return "-"


def _features(spec: dict[str, Any]) -> str:
    return f"{spec.get('feature_set', '-')}/{str(spec.get('feature_version', '-'))[:12]}"


def print_versions(root: Path, rows: list[tuple[ModelVersion, bool]], console: Console) -> None:
    if not rows:
        console.print(
            f"no models in the registry {root} (training registers them; --registry or "
            "$CRYPTOFLOW_REGISTRY picks another registry)"
        )
        return
    t = Table(title=f"{len(rows)} model version{'' if len(rows) == 1 else 's'} in {root}")
    for col in ("model", "version", "", "kind", "features", "label", "registered (UTC)", "metric"):
        t.add_column(col, no_wrap=col not in ("label", "metric"), overflow="fold")
    for mv, on in rows:
        spec = mv.meta.get("spec") or {}
        t.add_row(
            mv.name,
            mv.version,
            "promoted" if on else "",
            str(spec.get("kind", "-")),
            _features(spec),
            _text(mv.meta.get("label", "-"), 40),
            _time(mv.meta.get("registered_ns")),
            headline(mv.meta),
        )
    console.print(t)


def print_version(mv: ModelVersion, on: bool, console: Console) -> None:
    console.print(
        f"[bold]{mv.name} {mv.version}[/]{' (promoted)' if on else ''}  {mv.path}", soft_wrap=True
    )
    t = Table(show_header=True)
    t.add_column("key", no_wrap=True)
    t.add_column("value", overflow="fold")
    for k, v in sorted(registry.flatten(mv.meta).items()):
        t.add_row(k, _text(v, 200))
    console.print(t)


def _num(v: Any) -> str:
    return "-" if not isinstance(v, int | float) or v != v else f"{v:.4f}"


def cmd_retrain(args: argparse.Namespace, root: Path, cfg: Any, console: Console) -> int:
    metric = args.metric or cfg.models.champion_metric
    res = registry.retrain(
        root,
        args.name,
        dataset=args.dataset,
        metric=metric,
        min_improvement=cfg.models.min_improvement,
        eval_window=args.eval_window,
        fee_bps=args.fee_bps,
        dry_run=args.dry_run,
        progress=not args.no_progress,
    )
    if res.skipped:
        console.print(f"{res.name}: {res.skipped}", soft_wrap=True)
        return 0
    e = res.eval_window
    t = Table(title=f"{res.name} on {e['start'][:16]} .. {e['end'][:16]} (out of sample for both)")
    t.add_column("metric", no_wrap=True)
    t.add_column(f"champion {res.champion}", justify="right")
    t.add_column(f"challenger {res.challenger or '(dry run)'}", justify="right")
    for k in RETRAIN_ROWS:
        label = f"[bold]{k} *[/]" if k == metric else k
        t.add_row(label, _num(res.champion_metrics.get(k)), _num(res.challenger_metrics.get(k)))
    console.print(t)
    tw = res.training_window
    console.print(
        f"challenger trained on {tw['start']} .. {tw['end']} ({res.fold['rows']['test']} "
        f"evaluation rows, {res.seconds:.1f} s)",
        soft_wrap=True,
    )
    if args.dry_run:
        verdict = "would promote the challenger" if res.promoted else f"would keep {res.champion}"
        console.print(f"dry run: {verdict}: {res.reason}; nothing registered", soft_wrap=True)
        return 0
    if res.promoted:
        verdict = f"[bold]{res.challenger}[/] promoted (was {res.champion})"
    else:
        verdict = f"kept {res.champion}; {res.challenger} registered, not promoted"
    console.print(f"{res.name}: {verdict}: {res.reason}", soft_wrap=True)
    from infra.clickhouse import connect

    ch = cfg.clickhouse
    n = registry.sync_clickhouse(root, connect(ch.dsn, ch.database), ch.database, res.name)
    console.print(f"{n} rows written to {ch.database}.models")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    root, cfg = _root(args)
    console = _console()
    if args.action == "retrain":
        return cmd_retrain(args, root, cfg, console)
    if args.action == "list":
        rows: list[tuple[ModelVersion, bool]] = []
        for name in [args.name] if args.name else registry.names(root):
            current = registry.promoted(root, name)
            on = current.version if current else None
            rows += [(mv, mv.version == on) for mv in registry.versions(root, name)]
        print_versions(root, rows, console)
        return 0
    if args.action == "show":
        want = args.version
        if want is None:
            want = "promoted" if registry.promoted(root, args.name) else "latest"
        mv = registry.resolve(root, args.name, want)
        current = registry.promoted(root, args.name)
        print_version(mv, current is not None and current.version == mv.version, console)
        return 0
    if args.action == "promote":
        before = registry.promoted(root, args.name)
        mv = registry.promote(root, args.name, args.version)
        console.print(
            f"{mv.name}: {before.version if before else 'none'} -> [bold]{mv.version}[/] promoted"
        )
        from infra.clickhouse import connect

        ch = cfg.clickhouse
        n = registry.sync_clickhouse(root, connect(ch.dsn, ch.database), ch.database, mv.name)
        console.print(f"{n} rows written to {ch.database}.models")
        return 0
    a = registry.resolve(root, args.name, args.va)
    b = registry.resolve(root, args.name, args.vb)
    changed = registry.diff(a, b)
    if not changed:
        console.print(f"{a.name} {a.version} and {b.version}: no differences")
        return 0
    t = Table(title=f"{a.name}: {len(changed)} keys differ")
    t.add_column("key", no_wrap=True)
    t.add_column(a.version, overflow="fold")
    t.add_column(b.version, overflow="fold")
    for key, va, vb in changed:
        t.add_row(key, _text(va), _text(vb))
    console.print(t)
    return 0


def add_models_verb(
    sub: Any,
    verb: Callable[..., argparse.ArgumentParser],
    config_args: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Register `cryptoflow models` (cli.py's `_verb` and `config_args`)."""
    s = verb(
        sub,
        "models",
        "the model registry: versions, the promoted one, differences, retraining",
        "cryptoflow models list",
    )
    msub = s.add_subparsers(dest="action", required=True, metavar="ACTION")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--registry",
            help="registry folder (default: the config's models.registry, else "
            "$CRYPTOFLOW_REGISTRY, else <CRYPTOFLOW_DATA_DIR>/registry)",
        )
        config_args(p)
        p.set_defaults(fn=cmd_models)

    p = verb(msub, "list", "every version, with its promoted marker", "cryptoflow models list")
    p.add_argument("name", nargs="?", help="only this model (default: every model)")
    common(p)
    p = verb(
        msub, "show", "one version's metadata and metrics", "cryptoflow models show xgb-trend v2"
    )
    p.add_argument("name", help="a model name, as `cryptoflow models list` shows it")
    p.add_argument(
        "version", nargs="?", help="v<N>, latest or promoted (default: promoted, else latest)"
    )
    common(p)
    p = verb(
        msub,
        "promote",
        'make a version the one `version = "promoted"` producers score; also written to '
        "ClickHouse's models table",
        "cryptoflow models promote xgb-trend v2",
    )
    p.add_argument("name", help="a model name")
    p.add_argument("version", help="v<N> or latest")
    common(p)
    p = verb(
        msub,
        "diff",
        "the metadata and metric keys that differ between two versions",
        "cryptoflow models diff xgb-trend v1 v2",
    )
    p.add_argument("name", help="a model name")
    p.add_argument("va", metavar="VA", help="v<N>, latest or promoted")
    p.add_argument("vb", metavar="VB", help="v<N>, latest or promoted")
    common(p)
    p = verb(
        msub,
        "retrain",
        "train a challenger on the latest window; promote it only if it beats the promoted "
        "champion on the same window, unseen by both (skipped, exit 0, until the data hold one)",
        "cryptoflow models retrain xgboost-label_thr_10_0p002 --dataset out/latest.parquet",
    )
    p.add_argument("name", help="a model name with a promoted version (the champion)")
    p.add_argument(
        "--dataset",
        metavar="PATH",
        help="training-set parquet with the latest data (default: the champion's dataset)",
    )
    p.add_argument(
        "--eval-window",
        metavar="DURATION",
        help="evaluate on the last DURATION of data, e.g. 30d (default: the champion's "
        "walk-forward test=)",
    )
    p.add_argument(
        "--metric",
        choices=RETRAIN_METRICS,
        help="the deciding metric (default: the config's models.champion_metric, log_loss)",
    )
    p.add_argument("--fee-bps", type=float, default=10.0, help="fee per unit of turnover, bps")
    p.add_argument(
        "--dry-run", action="store_true", help="train and compare; register and promote nothing"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress spinner")
    common(p)

"""`cryptoflow sweep`: parameter sweeps (a grid, or an Optuna TPE search) that cannot quietly
pick an overfitted point (ADR 0014).

Every point is one `run_backtest` on the in-sample window; the best points by in-sample metric
(or all of them) are replayed again on the out-of-sample window, which must not overlap it. The
chosen point is the in-sample best, always reported with its out-of-sample number, and the
Spearman rank correlation of in-sample vs out-of-sample metrics over the confirmed points says
whether in-sample ranking means anything: a loud warning when it is <= 0 or when the in-sample
best lands in the bottom half out of sample.

Points run in worker processes (spawned; each its own chDB directory under `<out>/chdb`, since
chDB locks its data path per process) or, with one job, in this process against the config's
ClickHouse. The results do not depend on which: a backtest is deterministic, and an Optuna
search asks its trials in rounds of a fixed size, told in trial order, so its sequence depends
only on the seed.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import math
import shutil
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from dataflows.sweep_params import (
    Axis,
    Window,
    check_axes,
    check_windows,
    point_config,
    utc_text,
)
from schemas.config import Config

if TYPE_CHECKING:
    from dataflows.backtest import BacktestSpec

# The flow (bytewax, polars) is imported where a backtest runs, not when the CLI builds its
# parser: `cryptoflow --help` stays fast.


# metric -> +1 (higher is better) or -1; all are `operators.performance.Summary` fields
METRICS = {
    "sharpe": 1,
    "total_return": 1,
    "max_drawdown": -1,
    "profit_factor": 1,
    "win_rate": 1,
}
OOS_ALL_UP_TO = 20  # grids this small confirm every point out of sample by default
OPTUNA_ROUND = 8  # trials asked per round: fixed, so the search does not depend on --jobs
OVERFIT = "the in-sample optimum does not hold out of sample: likely overfit"


# --------------------------------------------------------------------------- windows


@dataclass(frozen=True)
class SweepSpec:
    source: str
    symbols: tuple[str, ...]
    in_sample: Window
    out_of_sample: Window
    axes: tuple[Axis, ...]
    metric: str = "sharpe"
    jobs: int = 1
    optuna: int | None = None  # trials; None: the grid
    seed: int = 0
    top_k: int = 5
    oos_all: bool | None = None  # None: when the points are <= OOS_ALL_UP_TO


@dataclass
class Point:
    index: int
    params: dict[str, Any]
    skipped: str = ""  # why the config rejected it
    is_run: dict[str, Any] | None = None  # Summary.to_dict() + run_id
    oos_run: dict[str, Any] | None = None
    is_rank: float | None = None
    oos_rank: float | None = None
    trials: list[int] = field(default_factory=list)  # Optuna trial numbers that asked it


@dataclass
class SweepResult:
    spec: SweepSpec
    points: list[Point]
    chosen: Point
    rank_corr: float | None
    warnings: list[str]
    out_dir: Path


_WORKER: dict[str, str] = {}  # in a worker process: its own chDB DSN


def _worker_init(root: str) -> None:
    _WORKER["dsn"] = "chdb://" + tempfile.mkdtemp(prefix="worker-", dir=root)


def run_point(cfg: Config, spec: BacktestSpec) -> dict[str, Any]:
    """One backtest, quiet (its summary table would drown the sweep's); -> summary + run id."""
    from dataflows.backtest import run_backtest

    if "dsn" in _WORKER and cfg.clickhouse.dsn.startswith("chdb:"):
        cfg = cfg.model_copy(
            update={"clickhouse": cfg.clickhouse.model_copy(update={"dsn": _WORKER["dsn"]})}
        )
    with contextlib.redirect_stdout(io.StringIO()):
        run_id, summary = run_backtest(
            cfg, spec, None, console=Console(stderr=True, quiet=True), progress=False
        )
    return {**summary.to_dict(), "run_id": run_id}


class _Pool:
    """Points in spawned workers (jobs > 1) or here, one at a time."""

    def __init__(self, jobs: int, root: Path, step: Callable[[], None]) -> None:
        self.step = step
        self.pool: ProcessPoolExecutor | None = None
        if jobs > 1:
            root.mkdir(parents=True, exist_ok=True)
            self.pool = ProcessPoolExecutor(
                jobs,
                mp_context=get_context("spawn"),
                initializer=_worker_init,
                initargs=(str(root),),
            )

    def run(self, tasks: list[tuple[Config, BacktestSpec]]) -> list[dict[str, Any]]:
        if self.pool is None:
            out = []
            for t in tasks:
                out.append(run_point(*t))
                self.step()
            return out
        futs: list[Future[dict[str, Any]]] = [self.pool.submit(run_point, *t) for t in tasks]
        for f in futs:
            f.add_done_callback(lambda _: self.step())
        return [f.result() for f in futs]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def metric_value(run: dict[str, Any] | None, metric: str) -> float:
    """The metric, oriented so higher is better; NaN when it is undefined (no round trips)."""
    v = None if run is None else run.get(metric)
    if v is None or not math.isfinite(float(v)):
        return math.nan
    return METRICS[metric] * float(v)


def ranks(values: Sequence[float]) -> list[float]:
    """1 = the highest; ties share their average rank."""
    order = sorted(range(len(values)), key=lambda i: -values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Rank correlation (ties averaged: the Pearson correlation of the ranks); None when it is
    undefined (fewer than 3 pairs, or one side all tied)."""
    if len(x) != len(y):
        raise ValueError(f"spearman: {len(x)} vs {len(y)} values")
    if len(x) < 3:
        return None
    rx, ry = ranks(x), ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    return None if sxx == 0 or syy == 0 else sxy / math.sqrt(sxx * syy)


def _bt(spec: SweepSpec, w: Window) -> BacktestSpec:
    from dataflows.backtest import BacktestSpec

    return BacktestSpec(spec.source, spec.symbols, w.start_ns, w.end_ns)


def _check_data(spec: SweepSpec, cfg: Config) -> None:
    """A file window with no bars fails before any worker starts, naming the window."""
    if not spec.source.startswith("file:"):
        return
    from dataflows.backtest import plan_file_replay

    for flag, w in (("--in-sample", spec.in_sample), ("--out-of-sample", spec.out_of_sample)):
        plan_file_replay(_bt(spec, w), cfg, f"{flag} {w.text()}: no data")


def _grid(cfg: Config, spec: SweepSpec) -> list[Point]:
    names = [a.path for a in spec.axes]
    pts = []
    for i, combo in enumerate(itertools.product(*(a.values for a in spec.axes))):
        _, params, why = point_config(cfg, dict(zip(names, combo, strict=True)))
        pts.append(Point(i, params, why))
    if not pts:
        raise ValueError("the grid is empty: give each --param at least one value")
    return pts


def _confirm_count(spec: SweepSpec, n: int) -> int:
    oos_all = spec.oos_all if spec.oos_all is not None else n <= OOS_ALL_UP_TO
    return n if oos_all else min(spec.top_k, n)


def _rank(points: list[Point], metric: str, attr: str) -> None:
    vals = [metric_value(getattr(p, attr), metric) for p in points]
    have = [i for i, v in enumerate(vals) if not math.isnan(v)]
    r = ranks([vals[i] for i in have])
    for i, k in zip(have, r, strict=True):
        setattr(points[i], attr.replace("_run", "_rank"), k)


def _in_sample(
    cfg: Config, spec: SweepSpec, points: list[Point], pool: _Pool, step: Callable[[], None]
) -> None:
    """Each valid point on the in-sample window (a skipped point counts as done at once)."""
    todo: list[tuple[Point, Config]] = []
    for p in points:
        c = None if p.skipped else point_config(cfg, p.params)[0]
        if c is None:
            step()
        else:
            todo.append((p, c))
    bt = _bt(spec, spec.in_sample)
    for (p, _), res in zip(todo, pool.run([(c, bt) for _, c in todo]), strict=True):
        p.is_run = res


def _optuna(cfg: Config, spec: SweepSpec, pool: _Pool, step: Callable[[], None]) -> list[Point]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists: dict[str, Any] = {}
    for a in spec.axes:
        if a.lo is None or a.hi is None:
            dists[a.path] = optuna.distributions.CategoricalDistribution(a.values)
        elif a.integer:
            dists[a.path] = optuna.distributions.IntDistribution(int(a.lo), int(a.hi))
        else:
            dists[a.path] = optuna.distributions.FloatDistribution(a.lo, a.hi)
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=spec.seed)
    )
    assert spec.optuna is not None
    seen: dict[str, Point] = {}
    for first in range(0, spec.optuna, OPTUNA_ROUND):
        trials = [study.ask(dists) for _ in range(min(OPTUNA_ROUND, spec.optuna - first))]
        fresh: list[Point] = []
        for t in trials:
            key = json.dumps(t.params, sort_keys=True)
            if key not in seen:
                _, params, why = point_config(cfg, dict(t.params))
                seen[key] = Point(len(seen), params, why)
                fresh.append(seen[key])
            seen[key].trials.append(t.number)
        _in_sample(cfg, spec, fresh, pool, step)
        new = {id(p) for p in fresh}
        for t in trials:
            p = seen[json.dumps(t.params, sort_keys=True)]
            if id(p) in new:
                new.discard(id(p))
            else:
                step()  # a repeat: already run, counted now
            v = metric_value(p.is_run, spec.metric)
            if math.isnan(v):
                study.tell(t, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(t, v)
    return list(seen.values())


def run_sweep(
    cfg: Config,
    spec: SweepSpec,
    out_dir: Path,
    *,
    console: Console | None = None,
    progress: bool = True,
) -> SweepResult:
    """Run the sweep, write `<out>/sweep.{csv,json}`, print the table; see the module doc."""
    console = console or Console(stderr=True)
    if spec.metric not in METRICS:
        raise ValueError(f"--metric {spec.metric!r}: one of {', '.join(METRICS)}")
    if spec.jobs < 1 or spec.top_k < 1 or (spec.optuna is not None and spec.optuna < 1):
        raise ValueError("--jobs, --top-k and --optuna must be >= 1")
    check_axes(spec.axes)
    check_windows(spec.in_sample, spec.out_of_sample)
    ranged = [a.path for a in spec.axes if a.lo is not None]
    if ranged and spec.optuna is None:
        raise ValueError(f"--param {', '.join(ranged)}: a lo:hi range needs --optuna N")
    _check_data(spec, cfg)
    # Sweep points store no feature rows: nothing reads them, and they cost insert time.
    cfg = cfg.model_copy(update={"features": cfg.features.model_copy(update={"store": False})})
    out_dir = Path(out_dir)
    root = out_dir / "chdb"
    if root.exists():
        shutil.rmtree(root)  # sweep-scoped: a rerun starts from empty worker databases
    points = _grid(cfg, spec) if spec.optuna is None else []
    n_is = len(points) if spec.optuna is None else spec.optuna
    n_valid = sum(not p.skipped for p in points) if spec.optuna is None else spec.optuna
    total = n_is + _confirm_count(spec, n_valid)
    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not progress,
    )
    with bar:
        task = bar.add_task(f"sweep ({spec.jobs} jobs)", total=total)

        def step() -> None:
            bar.update(task, advance=1)

        pool = _Pool(spec.jobs, root, step)
        try:
            if spec.optuna is None:
                _in_sample(cfg, spec, points, pool, step)
            else:
                points = _optuna(cfg, spec, pool, step)
            _rank(points, spec.metric, "is_run")
            ran = sorted(
                (p for p in points if p.is_run is not None),
                key=lambda p: (p.is_rank if p.is_rank is not None else math.inf, p.index),
            )
            if not ran:
                reasons = sorted({p.skipped for p in points})
                raise ValueError(f"no sweep point is a valid config: {'; '.join(reasons)}")
            confirm = ran[: _confirm_count(spec, len(ran))]
            bar.update(task, total=n_is + len(confirm))
            bt = _bt(spec, spec.out_of_sample)
            tasks = [(point_config(cfg, p.params)[0], bt) for p in confirm]
            for p, res in zip(confirm, pool.run(tasks), strict=True):  # type: ignore[arg-type]
                p.oos_run = res
        finally:
            pool.close()
    chosen = ran[0]
    result = judge(spec, points, chosen, out_dir)
    write_results(result)
    return result


def judge(spec: SweepSpec, points: list[Point], chosen: Point, out_dir: Path) -> SweepResult:
    """Out-of-sample ranks, the rank correlation and the overfit warnings."""
    confirmed = [p for p in points if p.oos_run is not None]
    _rank(confirmed, spec.metric, "oos_run")
    pairs = [
        (metric_value(p.is_run, spec.metric), metric_value(p.oos_run, spec.metric))
        for p in confirmed
    ]
    pairs = [(a, b) for a, b in pairs if not (math.isnan(a) or math.isnan(b))]
    rho = spearman([a for a, _ in pairs], [b for _, b in pairs])
    warnings = [f"point {p.index} skipped: {p.skipped}" for p in points if p.skipped]
    n = len(confirmed)
    oos_vals = {b for _, b in pairs}
    if rho is None:
        why = (
            f"only {len(pairs)} confirmed points with a {spec.metric}; confirm more (--top-k, "
            "--oos-all)"
            if len(pairs) < 3
            else f"every {spec.metric} on one side is the same (no trades?)"
        )
        warnings.append(f"IS/OOS rank correlation undefined: {why}")
    reasons = []
    # All OOS values tied (no trades out of sample, say): ranks say nothing, the note above does.
    tied = len(oos_vals) == 1 and chosen.oos_rank is not None
    if not tied and (chosen.oos_rank is None or chosen.oos_rank > n / 2):
        at = "n/a" if chosen.oos_rank is None else f"{chosen.oos_rank:g}"
        reasons.append(f"the in-sample best (point {chosen.index}) ranks {at} of {n} out of sample")
    if rho is not None and rho <= 0:
        reasons.append(f"IS/OOS rank correlation {rho:+.2f} <= 0")
    if reasons and n > 1:
        warnings.insert(0, f"{OVERFIT} ({'; '.join(reasons)})")
    return SweepResult(spec, points, chosen, rho, warnings, out_dir)


# --------------------------------------------------------------------------- output


def _row(p: Point, metric: str) -> dict[str, Any]:
    row: dict[str, Any] = {"point": p.index, **p.params, "skipped": p.skipped}
    cols = (metric, "total_return", "max_drawdown", "n_trades", "n_round_trips", "run_id")
    names = (metric, "return", "max_drawdown", "fills", "round_trips", "run_id")
    for side, run in (("is", p.is_run), ("oos", p.oos_run)):
        for col, name in zip(cols, names, strict=True):
            row[f"{side}_{name}"] = None if run is None else run.get(col)
        row[f"{side}_rank"] = getattr(p, f"{side}_rank")
    return row


def _finite(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def to_doc(r: SweepResult) -> dict[str, Any]:
    s = r.spec
    return {
        "source": s.source,
        "symbols": list(s.symbols),
        **{
            k: {"start": utc_text(w.start_ns), "end": utc_text(w.end_ns)}
            for k, w in (("in_sample", s.in_sample), ("out_of_sample", s.out_of_sample))
        },
        "metric": s.metric,
        "search": "grid" if s.optuna is None else f"optuna-tpe:{s.optuna}",
        "seed": s.seed,
        "axes": [asdict(a) for a in s.axes],
        "rank_correlation": r.rank_corr,
        "chosen": {k: _finite(v) for k, v in _row(r.chosen, s.metric).items()},
        "warnings": r.warnings,
        "points": [
            {**{k: _finite(v) for k, v in _row(p, s.metric).items()}, "trials": p.trials}
            for p in r.points
        ],
    }


def write_results(r: SweepResult) -> None:
    r.out_dir.mkdir(parents=True, exist_ok=True)
    doc = to_doc(r)
    (r.out_dir / "sweep.json").write_text(json.dumps(doc, indent=2) + "\n")
    rows = [_row(p, r.spec.metric) for p in r.points]
    with (r.out_dir / "sweep.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)

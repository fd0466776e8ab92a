"""Run analytics: everything a report shows, computed from what the run stored in ClickHouse
(the system of record) with the pure functions of operators/analytics/.

`load_run_data` reads one run (its `runs` row, fills, orders, equity, bar closes, feature set and
model lineage); `analyze` turns it into one JSON-able document — the report's only input, also
written as report.json — plus the run's round trips. Nothing here invents a number: every
metric comes from operators/analytics, every series from stored rows; plots see a decimated
copy of the series (at most `MAX_POINTS` points), never the metrics.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dataflows.report import risk_note, risk_story
from infra.clickhouse import DATETIME, TABLE_BY_CLASS, query_df, table_columns
from operators.account_trader import ACCOUNT
from operators.analytics import curve as C
from operators.analytics.benchmark import buy_and_hold
from operators.analytics.montecarlo import block_bootstrap, shuffle_trades
from operators.analytics.periods import period_returns
from operators.analytics.round_trips import round_trips
from operators.analytics.sharpe_stats import deflated_sharpe
from operators.analytics.trade_stats import per_symbol, trade_stats, turnover_notional
from schemas.messages import Fill, Liquidation, Order, RoundTrip

MAX_POINTS = 5000  # per plotted series
NS_PER_DAY = 86_400 * 10**9
MC_RUNS = 1000


class RunNotFound(ValueError):
    pass


@dataclass
class RunData:
    """One stored run, as arrays (equity at every bar close) and messages."""

    run: dict[str, Any]  # the `runs` row
    config: dict[str, Any]  # the run's trading config (parsed config_json)
    initial: float
    fills: list[Fill]
    orders: dict[str, Order]
    ts: np.ndarray  # int64 ns, bar closes with an equity point
    equity: np.ndarray
    closes: dict[str, tuple[np.ndarray, np.ndarray]]  # symbol -> (close times, closes)
    liquidations: list[Liquidation] = field(default_factory=list)
    feature_set: dict[str, str] | None = None
    models: list[dict[str, str]] = field(default_factory=list)
    risk: dict[str, Any] = field(default_factory=lambda: {"state_changes": [], "denials": {}})


# --------------------------------------------------------------------------- loading


def read_structs(client: Any, database: str, cls: type, run_id: str) -> list[Any]:
    """Every FINAL row of `run_id` in the table of message class `cls`, as messages (times back
    to int ns), in the table's natural order."""
    table = TABLE_BY_CLASS[cls]
    cols = [(n, t) for n, t in table_columns(table) if n != "run_id"]
    sel = ", ".join(
        f"toUnixTimestamp64Nano(`{n}`) AS `{n}`" if t.startswith(DATETIME) else f"`{n}`"
        for n, t in cols
    )
    order = ", ".join(c for c in table.order_by if c != "run_id")
    df = query_df(
        client,
        f"SELECT {sel} FROM `{database}`.`{table.name}` FINAL WHERE run_id = %(run)s "
        f"ORDER BY {order}",
        {"run": run_id},
    )
    out = []
    for row in df.iter_rows(named=True):
        row = {k: (tuple(v) if isinstance(v, list) else v) for k, v in row.items()}
        out.append(cls(**row))
    return out


def load_run_data(client: Any, database: str, run_id: str) -> RunData:
    runs = query_df(
        client,
        f"SELECT run_id, mode, source, toUnixTimestamp64Nano(start) AS start, "
        f"toUnixTimestamp64Nano(end) AS end, symbols, config_json "
        f"FROM `{database}`.runs FINAL WHERE run_id = %(run)s",
        {"run": run_id},
    )
    if runs.height == 0:
        raise RunNotFound(
            f"no run {run_id!r} in database {database}; `cryptoflow runs list` shows the "
            "stored runs (a run is recorded when its backtest or paper session finishes)"
        )
    run = runs.row(0, named=True)
    config = json.loads(run["config_json"])
    initial = float(config["portfolio"]["initial_cash"])
    fills = read_structs(client, database, Fill, run_id)
    orders = {o.order_id: o for o in read_structs(client, database, Order, run_id)}
    eq = query_df(
        client,
        f"SELECT toUnixTimestamp64Nano(ts_event) AS ts, equity FROM `{database}`.equity FINAL "
        f"WHERE run_id = %(run)s AND account = %(acct)s ORDER BY ts",
        {"run": run_id, "acct": ACCOUNT},
    )
    bars = query_df(
        client,
        f"SELECT symbol, toUnixTimestamp64Nano(ts_event) + interval_ns AS ts, close "
        f"FROM `{database}`.bars FINAL WHERE run_id = %(run)s ORDER BY symbol, ts",
        {"run": run_id},
    )
    closes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for (sym,), part in bars.group_by(["symbol"], maintain_order=True):
        closes[str(sym)] = (
            part["ts"].to_numpy().astype(np.int64),
            part["close"].to_numpy().astype(np.float64),
        )
    fsets = query_df(
        client,
        f"SELECT feature_set AS name, version FROM `{database}`.feature_sets FINAL "
        f"WHERE run_id = %(run)s ORDER BY version",
        {"run": run_id},
    )
    models = query_df(
        client,
        f"SELECT DISTINCT producer, model, model_version AS version, feature_version "
        f"FROM `{database}`.predictions FINAL WHERE run_id = %(run)s "
        f"ORDER BY producer, model, version",
        {"run": run_id},
    )
    return RunData(
        run=run,
        config=config,
        initial=initial,
        fills=fills,
        orders=orders,
        ts=eq["ts"].to_numpy().astype(np.int64),
        equity=eq["equity"].to_numpy().astype(np.float64),
        closes=closes,
        liquidations=read_structs(client, database, Liquidation, run_id),
        feature_set=dict(fsets.row(0, named=True)) if fsets.height else None,
        models=[{k: str(v) for k, v in r.items()} for r in models.iter_rows(named=True)],
        risk=risk_story(client, database, run_id),
    )


# --------------------------------------------------------------------------- computing


def gross_exposure(
    ts: np.ndarray,
    fills: list[Fill],
    closes: dict[str, tuple[np.ndarray, np.ndarray]],
    liquidations: Sequence[Liquidation] = (),
) -> np.ndarray:
    """Sum over symbols of |position| x last close at each equity time. A fill's (and a
    liquidation's) ts_event is the open of the bar it happened in, so it is in the position at
    that bar's close and after (events strictly before the equity time)."""
    out = np.zeros(len(ts))
    moves: list[Fill | Liquidation] = [*fills, *liquidations]
    for sym in sorted({f.symbol for f in moves}):
        mine = [f for f in moves if f.symbol == sym]
        fts = np.array([f.ts_event for f in mine], dtype=np.int64)
        dq = np.array([f.qty if f.side == "buy" else -f.qty for f in mine])
        order = np.argsort(fts, kind="stable")
        pos = np.cumsum(dq[order])
        n_in = np.searchsorted(fts[order], ts, side="left")
        qty = np.where(n_in > 0, pos[np.maximum(n_in - 1, 0)], 0.0)
        qty[np.abs(qty) <= 1e-9 * np.max(np.abs(dq))] = 0.0
        if sym not in closes:
            raise ValueError(f"fills for {sym} but no stored bars: cannot mark the position")
        cts, cpx = closes[sym]
        k = np.searchsorted(cts, ts, side="right") - 1
        px = np.where(k >= 0, cpx[np.maximum(k, 0)], 0.0)
        out += np.abs(qty) * px
    return out


def _finite(v: Any) -> Any:
    """JSON has no NaN/inf: None instead (the report shows n/a)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_finite(x) for x in v]
    if isinstance(v, np.generic):
        return _finite(v.item())
    return v


def decimate(n: int, limit: int = MAX_POINTS) -> np.ndarray:
    """Indices of at most `limit` evenly spaced points, first and last always kept."""
    if n <= limit:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(np.int64))


def rolling_window(ts: np.ndarray) -> int:
    """Rolling-Sharpe window in bars: a week, or a day on runs under four weeks (min 10)."""
    if len(ts) < 2:
        return 10
    step = float(np.median(np.diff(ts)))
    span = float(ts[-1] - ts[0])
    days = 7 if span >= 28 * NS_PER_DAY else 1
    return max(10, round(days * NS_PER_DAY / step))


def _curve(
    ts: np.ndarray, eq: np.ndarray, initial: float, exposure: np.ndarray, traded: float
) -> dict[str, Any]:
    m = C.curve_metrics(ts, eq, initial, gross_exposure=exposure, traded_notional=traded)
    return m.to_dict()


def analyze(
    data: RunData, *, mc_runs: int = MC_RUNS, seed: int = 0, trials: int = 1, sr_var: float = 0.0
) -> tuple[dict[str, Any], list[RoundTrip]]:
    """The report document of one run (see dataflows/html_report.py for its keys) and its round
    trips. `trials`/`sr_var`: how many strategy variants were tried to get here and the variance
    of their annualised Sharpe ratios, for the deflated Sharpe ratio (1 trial: DSR = PSR)."""
    ts, eq, initial = data.ts, data.equity, data.initial
    if len(ts) < 2:
        raise ValueError(
            f"run {data.run['run_id']} has {len(ts)} equity point(s): nothing to analyse "
            "(did the replay read any bars? `cryptoflow runs show` lists its range)"
        )
    fee_rate = float(data.config.get("execution", {}).get("fee_bps", 0.0)) / 1e4
    symbols = sorted(data.closes)
    marks = {s: (int(c[0][-1]), float(c[1][-1])) for s, c in data.closes.items()}
    if mc_runs < 0 or trials < 1:
        raise ValueError(f"Monte Carlo runs must be >= 0 and trials >= 1, got {mc_runs}, {trials}")
    if trials > 1 and not (math.isfinite(sr_var) and sr_var > 0):
        raise ValueError(
            f"{trials} trials need the variance of their Sharpe ratios (> 0, got {sr_var}) for the "
            "deflated Sharpe ratio: pass --sharpe-var, or --sweep SWEEP.json"
        )
    trips = round_trips(data.fills, data.orders, liquidations=data.liquidations, marks=marks)
    closed = [t for t in trips if t.exit_reason != "open"]
    exposure = gross_exposure(ts, data.fills, data.closes, data.liquidations)
    traded = turnover_notional(data.fills, data.liquidations)

    strat = _curve(ts, eq, initial, exposure, traded)
    rets = C.returns(eq, initial)
    # psr: from curve_metrics (None where undefined: a flat curve has no Sharpe ratio)
    # the trials' Sharpe variance, annualised -> per bar (the DSR works on per-bar ratios)
    per_bar_var = sr_var / C.periods_per_year(ts)
    strat["dsr"] = _dsr(rets, trials, per_bar_var) if trials > 1 else strat["psr"]
    strat["dsr_trials"] = trials
    tstats = trade_stats(trips).to_dict()
    exit_reasons = tstats.pop("exit_reasons")
    strat.update(tstats)

    bts, beq = buy_and_hold(data.closes, initial, fee_rate=fee_rate, at=ts)
    bexp = np.where(beq > 0, beq - _bh_cash(data.closes, initial, ts), 0.0)
    bench = _curve(bts, beq, initial, bexp, initial / (1 + fee_rate))
    bench["dsr"] = bench["psr"]

    by_sym = per_symbol(trips)
    per_sym = []
    for s in symbols:
        st = by_sym.get(s)
        cts, cpx = data.closes[s]
        per_sym.append(
            {
                "symbol": s,
                "n_trades": st.n_trades if st else 0,
                "pnl": (st.gross_pnl - st.fees) if st else 0.0,
                "win_rate": st.win_rate if st else None,
                "fees": st.fees if st else 0.0,
                "benchmark_return": float(cpx[-1] / cpx[0] / (1 + fee_rate) - 1.0),
            }
        )

    idx = decimate(len(ts))
    window = rolling_window(ts)
    series = {
        "ts": ts[idx].tolist(),
        "equity": eq[idx].tolist(),
        "benchmark": beq[idx].tolist(),
        "drawdown": C.drawdown(eq, initial)[idx].tolist(),
        "benchmark_drawdown": C.drawdown(beq, initial)[idx].tolist(),
        "exposure": (exposure / eq)[idx].tolist(),
        "rolling_sharpe": C.rolling_sharpe(ts, eq, initial, window)[idx].tolist(),
        "rolling_window": window,
        "decimated": bool(len(idx) < len(ts)),
        "n_points": len(ts),
    }
    prices = {}
    for s in symbols:
        cts, cpx = data.closes[s]
        k = decimate(len(cts))
        prices[s] = {"ts": cts[k].tolist(), "close": cpx[k].tolist()}

    mc: dict[str, Any] = {"trade_shuffle": None, "block_bootstrap": None}
    if mc_runs > 0 and len(closed) >= 2:
        pnls = np.array([t.pnl for t in closed])
        mc["trade_shuffle"] = shuffle_trades(pnls, initial, n_runs=mc_runs, seed=seed).to_dict()
    if mc_runs > 0 and len(rets) >= 10:
        ppy = C.periods_per_year(ts)
        mc["block_bootstrap"] = block_bootstrap(
            rets, initial, n_runs=mc_runs, seed=seed, periods_per_year=ppy
        ).to_dict()

    run = data.run
    doc = {
        "run": {
            "run_id": run["run_id"],
            "mode": run["mode"],
            "source": run["source"],
            "symbols": symbols or str(run["symbols"]).split(","),
            "start_ns": int(ts[0]),
            "end_ns": int(ts[-1]),
            "requested_start_ns": int(run["start"] or 0),
            "requested_end_ns": int(run["end"] or 0),
            "config": data.config,
            "feature_set": data.feature_set,
            "models": data.models,
            "generated_by": f"cryptoflow {_version()}",
        },
        "metrics": {"strategy": strat, "benchmark": bench},
        "per_symbol": per_sym,
        "exit_reasons": exit_reasons,
        "periods": {
            p: [_period_dict(r) for r in period_returns(ts, eq, initial, p)]
            for p in ("month", "day")
        },
        "benchmark_periods": {
            "month": [_period_dict(r) for r in period_returns(bts, beq, initial, "month")]
        },
        "series": series,
        "prices": prices,
        "trades": [_trip_dict(t) for t in trips],
        "montecarlo": mc,
        "risk": data.risk,
        "warnings": _warnings(data, trips),
    }
    return _finite(doc), trips


def _dsr(rets: np.ndarray, trials: int, sr_var: float) -> float | None:
    """The deflated Sharpe ratio, None where it is undefined (a flat curve)."""
    if len(rets) < 3 or float(np.std(rets)) == 0.0:
        return None
    return deflated_sharpe(rets, trials, sr_var)


def _bh_cash(
    closes: dict[str, tuple[np.ndarray, np.ndarray]], initial: float, at: np.ndarray
) -> np.ndarray:
    """The buy-and-hold portfolio's idle cash at each time: a symbol's share is cash until its
    first close (so exposure counts only what is bought)."""
    share = initial / max(len(closes), 1)
    first = np.sort(np.array([c[0][0] for c in closes.values()], dtype=np.int64))
    return share * (len(first) - np.searchsorted(first, at, side="right"))


def _period_dict(r: Any) -> dict[str, Any]:
    return {
        "period": r.period,
        "ret": r.ret,
        "start_ns": r.start_ns,
        "end_ns": r.end_ns,
        "start_equity": r.start_equity,
        "end_equity": r.end_equity,
        "n_bars": r.n_bars,
    }


def _trip_dict(t: RoundTrip) -> dict[str, Any]:
    import msgspec

    return msgspec.to_builtins(t)  # type: ignore[no-any-return]


def _warnings(data: RunData, trips: list[RoundTrip]) -> list[str]:
    out = []
    wanted = [s for s in str(data.run["symbols"]).split(",") if s]
    missing = [s for s in wanted if s not in data.closes]
    if missing:
        out.append(f"no bars stored for {', '.join(missing)}: the run traded without them")
    open_ = [t.symbol for t in trips if t.exit_reason == "open"]
    if open_:
        out.append(
            f"positions still open at the end ({', '.join(open_)}): their trips are marked at "
            "the last close, before exit fees"
        )
    if not data.fills:
        out.append("the run made no trades: every trade metric is n/a")
    span = (int(data.ts[0]), int(data.ts[-1])) if len(data.ts) else None
    said = risk_note(data.risk, span)
    if said is not None and said[1]:  # ended halted or reduce-only: the curve is the engine's
        out.append(said[0])
    return out


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cryptoflow")
    except PackageNotFoundError:
        return "unknown"

"""A backtest's analysis end to end on real Binance bars (file source, real chDB): the report
files, the round trips in ClickHouse, the SQL views, `cryptoflow report` and `compare` — each
number checked against a computation written here from the raw inputs (the parquet, the stored
equity and fills), not against the analytics code itself."""

from __future__ import annotations

import csv
import json
import math
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from dataflows.backtest import BacktestSpec, parse_time, run_backtest
from dataflows.cli import main
from infra.clickhouse import connect, query_df
from schemas.config import Config
from tests.dataflows.flowkit import sma_config
from tests.paths import BARS_2024_01

START, END = "2024-01-08", "2024-01-11"


@pytest.fixture(autouse=True)
def _session_clickhouse(ch_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLICKHOUSE_DSN", ch_dsn)
    monkeypatch.setenv("COLUMNS", "300")


def _cfg(ch_dsn: str, ch_db: str, **over) -> Config:
    return sma_config(None, clickhouse={"dsn": ch_dsn, "database": ch_db}, **over)


def _spec() -> BacktestSpec:
    return BacktestSpec(
        f"file:{BARS_2024_01}", ("BTCUSDT", "ETHUSDT"), parse_time(START), parse_time(END)
    )


@pytest.fixture
def run(ch_dsn: str, ch_db: str, tmp_path: Path) -> tuple[Config, str, Path, dict]:
    cfg = _cfg(ch_dsn, ch_db)
    out = tmp_path / "bt"
    run_id, _ = run_backtest(cfg, _spec(), out, progress=False)
    doc = json.loads((out / "report.json").read_text())
    return cfg, run_id, out, doc


def _closes() -> pl.DataFrame:
    lo, hi = (datetime.fromisoformat(s).replace(tzinfo=UTC) for s in (START, END))
    return (
        pl.read_parquet(BARS_2024_01)
        .filter((pl.col("open_time") >= lo) & (pl.col("open_time") < hi))
        .sort("symbol", "open_time")
    )


def _equity(out: Path) -> tuple[list[int], list[float]]:
    with (out / "equity.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    return [int(r["ts_event"]) for r in rows], [float(r["equity"]) for r in rows]


def test_backtest_out_writes_the_report_and_its_tables(run) -> None:
    cfg, run_id, out, doc = run
    for name in ("report.html", "report.json", "metrics.csv", "trades.csv", "monthly.csv"):
        assert (out / name).stat().st_size > 0, name
    html = (out / "report.html").read_text()
    assert run_id in html and "<script" in html
    assert doc["run"]["run_id"] == run_id
    _, eq = _equity(out)
    initial = cfg.portfolio.initial_cash
    s = doc["metrics"]["strategy"]
    assert s["final_equity"] == eq[-1]
    assert s["total_return"] == pytest.approx(eq[-1] / initial - 1, rel=1e-12)
    # max drawdown: a plain loop over the stored curve, the initial cash as the first peak
    peak, mdd = initial, 0.0
    for e in eq:
        peak = max(peak, e)
        mdd = max(mdd, 1 - e / peak)
    assert s["max_drawdown"] == pytest.approx(mdd, rel=1e-12)
    # daily returns compound to the total
    days = doc["periods"]["day"]
    assert [d["period"] for d in days] == ["2024-01-08", "2024-01-09", "2024-01-10"]
    assert math.prod(1 + d["ret"] for d in days) - 1 == pytest.approx(s["total_return"])


def test_buy_and_hold_is_the_raw_closes_equal_weight(run) -> None:
    cfg, _, _, doc = run
    fee = cfg.execution.fee_bps / 1e4
    df = _closes()
    want = 0.0
    for sym in ("BTCUSDT", "ETHUSDT"):
        c = df.filter(pl.col("symbol") == sym)["close"]
        want += 0.5 / (1 + fee) * c[-1] / c[0]  # all-in: notional = cash / (1 + fee)
    assert doc["metrics"]["benchmark"]["total_return"] == pytest.approx(want - 1, rel=1e-9)
    per = {r["symbol"]: r["benchmark_return"] for r in doc["per_symbol"]}
    c = df.filter(pl.col("symbol") == "BTCUSDT")["close"]
    assert per["BTCUSDT"] == pytest.approx(c[-1] / c[0] / (1 + fee) - 1, rel=1e-12)


def test_round_trips_match_the_fills_and_the_table(run, ch_dsn: str) -> None:
    cfg, run_id, out, doc = run
    with (out / "trades.csv").open() as fh:
        trips = list(csv.DictReader(fh))
    with (out / "fills.csv").open() as fh:
        fills = list(csv.DictReader(fh))
    assert len(trips) == len(doc["trades"]) > 10
    # long-only all-in: each trip is one buy then one sell of the same symbol
    assert len(fills) == 2 * len([t for t in trips if t["exit_reason"] != "open"]) + sum(
        t["exit_reason"] == "open" for t in trips
    )
    # net PnL of closed trips = cash flows of their fills (a separately written ledger)
    flows: dict[str, float] = {}
    for f in fills:
        sign = -1 if f["side"] == "buy" else 1
        flows[f["symbol"]] = (
            flows.get(f["symbol"], 0.0) + sign * float(f["price"]) * float(f["qty"])
        ) - float(f["fee"])
    open_syms = {t["symbol"] for t in trips if t["exit_reason"] == "open"}
    closed_pnl = sum(float(t["pnl"]) for t in trips if t["exit_reason"] != "open")
    if not open_syms:
        assert closed_pnl == pytest.approx(sum(flows.values()), rel=1e-9, abs=1e-6)
    assert {t["exit_reason"] for t in trips} <= {"signal", "open"}
    client = connect(ch_dsn, cfg.clickhouse.database)
    n = int(
        client.command(
            f"SELECT count() FROM {cfg.clickhouse.database}.round_trips FINAL "
            f"WHERE run_id = '{run_id}'"
        )
    )
    assert n == len(trips)


def test_views_give_the_reports_numbers(run, ch_dsn: str) -> None:
    cfg, run_id, _, doc = run
    db = cfg.clickhouse.database
    client = connect(ch_dsn, db)
    m = query_df(client, f"SELECT * FROM {db}.run_metrics WHERE run_id = %(r)s", {"r": run_id})
    row = m.row(0, named=True)
    s = doc["metrics"]["strategy"]
    for key in ("total_return", "volatility", "sharpe", "max_drawdown", "annual_return"):
        assert row[key] == pytest.approx(s[key], rel=1e-9), key
    assert row["n_bars"] == doc["series"]["n_points"]
    t = query_df(
        client, f"SELECT * FROM {db}.run_trade_stats WHERE run_id = %(r)s", {"r": run_id}
    ).row(0, named=True)
    for key in ("n_trades", "win_rate", "profit_factor", "expectancy", "fees", "gross_pnl"):
        assert t[key] == pytest.approx(s[key], rel=1e-9), key
    p = query_df(
        client,
        f"SELECT period, ret FROM {db}.run_period_returns WHERE run_id = %(r)s AND kind = 'day' "
        "ORDER BY period",
        {"r": run_id},
    )
    got = dict(p.iter_rows())
    assert got.keys() == {d["period"] for d in doc["periods"]["day"]}
    for d in doc["periods"]["day"]:
        assert got[d["period"]] == pytest.approx(d["ret"], rel=1e-9, abs=1e-15)


def test_report_and_compare_commands(run, ch_dsn: str, ch_db: str, tmp_path: Path, capsys) -> None:
    _, run_id, _, doc = run
    conf = tmp_path / "c.toml"
    conf.write_text(f'[clickhouse]\ndsn = "{ch_dsn}"\ndatabase = "{ch_db}"\n')
    out = tmp_path / "rep"
    assert main(["report", run_id, "--out", str(out), "--config", str(conf)]) == 0
    again = json.loads((out / "report.json").read_text())
    assert again["metrics"] == doc["metrics"]  # same run, same numbers (seeded Monte Carlo)
    text = capsys.readouterr().out
    assert "vs buy-and-hold" in text and str(out / "report.html") in text
    # a second run (other parameters) to compare with
    other, _ = run_backtest(
        _cfg(ch_dsn, ch_db, strategy={"fast": 20, "slow": 100}), _spec(), None, progress=False
    )
    cmp = tmp_path / "cmp.html"
    assert main(["compare", run_id, other, "--out", str(cmp), "--config", str(conf)]) == 0
    html = cmp.read_text()
    assert run_id in html and other in html
    rows = list(csv.reader(cmp.with_suffix(".csv").open()))
    assert rows[0] == ["metric", run_id, other]
    assert main(["report", "bt-nope", "--config", str(conf)]) == 2
    assert "no run 'bt-nope'" in capsys.readouterr().err


def test_a_run_without_trades_still_reports(ch_dsn: str, ch_db: str, tmp_path: Path) -> None:
    """Slow average longer than the range: no crossing, no trade, a flat curve (no Sharpe)."""
    cfg = _cfg(ch_dsn, ch_db, strategy={"fast": 10, "slow": 5000})
    out = tmp_path / "flat"
    run_backtest(cfg, _spec(), out, progress=False)
    doc = json.loads((out / "report.json").read_text())
    s = doc["metrics"]["strategy"]
    assert s["total_return"] == 0.0 and s["n_trades"] == 0
    assert s["sharpe"] is None and s["psr"] is None and s["win_rate"] is None
    assert doc["trades"] == [] and doc["montecarlo"]["trade_shuffle"] is None
    assert any("no trades" in w for w in doc["warnings"])
    assert doc["metrics"]["benchmark"]["sharpe"] is not None
    assert "no trades" in (out / "report.html").read_text()


def test_report_deflates_the_sharpe_of_a_sweeps_pick(
    run, ch_dsn: str, ch_db: str, tmp_path: Path
) -> None:
    """--sweep: N tried points and the variance of their Sharpe ratios -> DSR, checked against
    the paper's formula written out here (Bailey & Lopez de Prado 2014)."""
    from statistics import NormalDist, variance

    import numpy as np

    cfg, run_id, out, _ = run
    sharpes = [-3.0, 1.5, 4.0, 0.5]
    sweep = tmp_path / "sweep.json"
    sweep.write_text(json.dumps({"points": [{"is_sharpe": v, "skipped": ""} for v in sharpes]}))
    conf = tmp_path / "c.toml"
    conf.write_text(f'[clickhouse]\ndsn = "{ch_dsn}"\ndatabase = "{ch_db}"\n')
    rep = tmp_path / "dsr"
    args = ["report", run_id, "--out", str(rep), "--config", str(conf), "--mc-runs", "0"]
    assert main([*args, "--sweep", str(sweep)]) == 0
    s = json.loads((rep / "report.json").read_text())["metrics"]["strategy"]
    _, eq = _equity(out)
    e = np.array([cfg.portfolio.initial_cash, *eq])
    r = e[1:] / e[:-1] - 1
    n, sr = len(r), r.mean() / r.std(ddof=1)
    z = (r - r.mean()) / r.std()
    skew, kurt = (z**3).mean(), (z**4).mean()
    nd, g, trials = NormalDist(), 0.5772156649015329, len(sharpes)
    var = variance(sharpes) / 525_600  # annualised -> per 1m bar
    sr0 = math.sqrt(var) * (
        (1 - g) * nd.inv_cdf(1 - 1 / trials) + g * nd.inv_cdf(1 - 1 / (trials * math.e))
    )
    want = nd.cdf((sr - sr0) * math.sqrt(n - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2))
    assert s["dsr_trials"] == trials
    assert s["dsr"] == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert s["dsr"] <= s["psr"]
    assert main([*args, "--trials", "4"]) == 2  # trials without their variance: refused

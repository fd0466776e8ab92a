"""`cryptoflow sweep` on real Binance 1m bars (BTCUSDT + ETHUSDT, January 2024), real chDB: a
grid in two spawned workers (each its own chDB) equals the same points run one by one in this
process; the replayed windows are the requested ones and do not overlap (read back from the
stored equity); ranks and the rank correlation agree with scipy; an overfit in-sample optimum
is called out; an Optuna search is reproducible from its seed; bad requests fail before any
backtest runs, naming what to fix."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dataflows.backtest import parse_time
from dataflows.sweep import (
    OVERFIT,
    Axis,
    Point,
    SweepResult,
    SweepSpec,
    judge,
    ranks,
    run_sweep,
    spearman,
)
from dataflows.sweep_params import parse_param, parse_window, point_config
from infra.clickhouse import connect, query_df
from schemas.config import Config
from tests.dataflows.flowkit import sma_config
from tests.paths import BARS_2024_01

SOURCE = f"file:{BARS_2024_01}"
SYMBOLS = ("BTCUSDT", "ETHUSDT")
IS = "2024-01-01:2024-01-03"
OOS = "2024-01-03:2024-01-04"
MINUTE = 60 * 10**9


def config(dsn: str, db: str) -> Config:
    return sma_config(list(SYMBOLS), clickhouse={"dsn": dsn, "database": db})


def is_(p: Point) -> dict[str, Any]:
    assert p.is_run is not None, p
    return p.is_run


def oos(p: Point) -> dict[str, Any]:
    assert p.oos_run is not None, p
    return p.oos_run


def grid_spec(jobs: int) -> SweepSpec:
    return SweepSpec(
        SOURCE,
        SYMBOLS,
        parse_window(IS, "--in-sample"),
        parse_window(OOS, "--out-of-sample"),
        (parse_param("strategy.fast=5,10,40"), parse_param("strategy.slow=30,60")),
        jobs=jobs,
    )


@pytest.fixture(scope="module")
def grid(ch_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The same 6-point grid (one point invalid: fast 40 >= slow 30) twice: 2 workers, and
    serially here against the session's chDB (database `db`)."""
    db = f"test_{uuid.uuid4().hex[:12]}"
    cfg = config(ch_dsn, db)
    out = tmp_path_factory.mktemp("sweep")
    par = run_sweep(cfg, grid_spec(2), out / "par", progress=False)
    ser = run_sweep(cfg, grid_spec(1), out / "ser", progress=False)
    yield {"par": par, "ser": ser, "db": db, "dsn": ch_dsn, "out": out}
    connect(ch_dsn, db).command(f"DROP DATABASE IF EXISTS `{db}`")


def test_parallel_equals_serial(grid: dict[str, Any]) -> None:
    par, ser = grid["par"], grid["ser"]
    assert [p.params for p in par.points] == [
        {"strategy.fast": f, "strategy.slow": s} for f in (5, 10, 40) for s in (30, 60)
    ]
    for a, b in zip(par.points, ser.points, strict=True):
        assert (a.is_run, a.oos_run, a.is_rank, a.oos_rank) == (
            b.is_run,
            b.oos_run,
            b.is_rank,
            b.oos_rank,
        )
    assert par.chosen.index == ser.chosen.index and par.rank_corr == ser.rank_corr
    # the files say the same, byte for byte
    for name in ("sweep.json", "sweep.csv"):
        assert (par.out_dir / name).read_text() == (ser.out_dir / name).read_text()
    # each worker had its own chDB directory under the sweep's out dir
    assert len(list((par.out_dir / "chdb").iterdir())) == 2
    assert not (ser.out_dir / "chdb").exists()


def test_points_ran_and_skipped(grid: dict[str, Any]) -> None:
    r: SweepResult = grid["par"]
    bad = [p for p in r.points if p.params == {"strategy.fast": 40, "strategy.slow": 30}]
    assert len(bad) == 1 and "strategy.fast (40) must be < strategy.slow (30)" in bad[0].skipped
    assert bad[0].is_run is None and bad[0].oos_run is None
    ran = [p for p in r.points if not p.skipped]
    assert len(ran) == 5 and all(p.is_run and p.oos_run for p in ran)  # <= 20: all confirmed
    # distinct points really trade differently (a sweep that ignored --param would not)
    assert len({is_(p)["n_trades"] for p in ran}) == 5
    best = max(ran, key=lambda p: is_(p)["sharpe"])
    assert r.chosen is best and best.is_rank == 1
    doc = json.loads((r.out_dir / "sweep.json").read_text())
    assert doc["chosen"]["oos_sharpe"] == oos(best)["sharpe"]
    rows = list(csv.DictReader((r.out_dir / "sweep.csv").open()))
    assert [int(x["point"]) for x in rows] == list(range(6))
    assert float(rows[best.index]["oos_return"]) == oos(best)["total_return"]


def test_windows_replayed_apart(grid: dict[str, Any]) -> None:
    """What the stored runs hold: every in-sample equity point inside the in-sample window,
    every out-of-sample one inside its own, none shared."""
    r: SweepResult = grid["ser"]
    db = grid["db"]
    client = connect(grid["dsn"], db)
    lo, mid, hi = (parse_time(d) for d in ("2024-01-01", "2024-01-03", "2024-01-04"))
    assert lo is not None and mid is not None and hi is not None
    for side, a, b in (("is", lo, mid), ("oos", mid, hi)):
        ids = [(is_ if side == "is" else oos)(p)["run_id"] for p in r.points if not p.skipped]
        df = query_df(
            client,
            f"SELECT run_id, min(toUnixTimestamp64Nano(ts_event)) AS t0, "
            f"max(toUnixTimestamp64Nano(ts_event)) AS t1, count() AS n "
            f"FROM `{db}`.equity FINAL WHERE run_id IN %(ids)s GROUP BY run_id",
            {"ids": ids},
        )
        assert df.height == 5
        for row in df.iter_rows(named=True):  # equity at each bar close in [a, b)
            assert row["t0"] == a + MINUTE and row["t1"] == b and row["n"] == (b - a) // MINUTE


def test_rank_correlation_matches_scipy(grid: dict[str, Any]) -> None:
    stats = pytest.importorskip("scipy.stats")
    r: SweepResult = grid["par"]
    ran = [p for p in r.points if not p.skipped]
    rho = stats.spearmanr([is_(p)["sharpe"] for p in ran], [oos(p)["sharpe"] for p in ran])
    assert r.rank_corr == pytest.approx(float(rho.statistic), abs=1e-12)


def test_spearman_hand_example() -> None:
    # ranks of y with a tie: 1, 2, 3.5, 5, 3.5 -> sxy 8, sxx 10, syy 9.5 -> 8 / sqrt(95)
    assert spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(8 / math.sqrt(95))
    # no ties: 1 - 6 sum d^2 / (n (n^2 - 1)), d = (0, 2, 1, 1, 2) -> 1 - 60/120
    assert spearman([10, 20, 30, 40, 50], [1, 4, 2, 5, 3]) == pytest.approx(0.5)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2], [1, 2]) is None  # too few to mean anything
    assert spearman([1, 2, 3], [4, 4, 4]) is None  # one side all tied
    assert ranks([0.5, 2.0, 2.0, -1.0]) == [3.0, 1.5, 1.5, 4.0]
    stats = pytest.importorskip("scipy.stats")
    x, y = [3.1, -2.0, 0.5, 0.5, 9.0, 4.4, -7.0], [1.0, 2.0, 2.0, -3.0, 5.0, 0.0, 1.0]
    assert spearman(x, y) == pytest.approx(float(stats.spearmanr(x, y).statistic), abs=1e-12)


def _pt(i: int, is_sharpe: float, oos_sharpe: float) -> Point:
    return Point(
        i, {"strategy.fast": i}, is_run={"sharpe": is_sharpe}, oos_run={"sharpe": oos_sharpe}
    )


def _spec() -> SweepSpec:
    w = parse_window(IS, "--in-sample")
    return SweepSpec(SOURCE, SYMBOLS, w, parse_window(OOS, "x"), (Axis("strategy.fast"),))


def test_overfit_is_called_out(tmp_path: Path) -> None:
    # the in-sample best (point 0) is the worst out of sample; correlation negative
    pts = [_pt(0, 3.0, -2.0), _pt(1, 2.0, 1.0), _pt(2, 1.0, 0.5), _pt(3, 0.0, 0.7)]
    for p, k in zip(pts, (1, 2, 3, 4), strict=True):
        p.is_rank = k
    r = judge(_spec(), pts, pts[0], tmp_path)
    assert r.warnings[0].startswith(OVERFIT)
    assert "ranks 4 of 4 out of sample" in r.warnings[0] and "<= 0" in r.warnings[0]
    assert r.rank_corr == pytest.approx(spearman([3, 2, 1, 0], [-2, 1, 0.5, 0.7]))
    # in-sample order that holds: no warning
    good = [_pt(0, 3.0, 2.0), _pt(1, 2.0, 1.0), _pt(2, 1.0, 0.5), _pt(3, 0.0, 0.7)]
    assert not judge(_spec(), good, good[0], tmp_path).warnings
    # the best holds its rank but the ranking as a whole does not: OOS ranks 1, 5, 4, 3, 2
    flat = [_pt(i, 5.0 - i, o) for i, o in enumerate((5.0, 1.0, 2.0, 3.0, 4.0))]
    for p in flat:
        p.is_rank = p.index + 1.0
    r = judge(_spec(), flat, flat[0], tmp_path)
    assert r.rank_corr == pytest.approx(0.0) and flat[0].oos_rank == 1
    assert r.warnings[0] == f"{OVERFIT} (IS/OOS rank correlation +0.00 <= 0)"
    # nothing traded out of sample: every OOS value the same; no ranking to judge, said so
    tied = [_pt(i, 3.0 - i, 0.0) for i in range(3)]
    for p in tied:
        p.is_rank = p.index + 1.0
    r = judge(_spec(), tied, tied[0], tmp_path)
    assert r.rank_corr is None and r.warnings == [
        "IS/OOS rank correlation undefined: every sharpe on one side is the same (no trades?)"
    ]


def test_optuna_reproducible(ch_dsn: str, ch_db: str, tmp_path: Path) -> None:
    import optuna

    cfg = config(ch_dsn, ch_db)
    axes = (
        parse_param("strategy.fast=3:30", optuna=True),
        parse_param("strategy.slow=31:90", optuna=True),
        parse_param("strategy.price=close,open", optuna=True),
    )
    spec = SweepSpec(
        SOURCE,
        SYMBOLS,
        parse_window("2024-01-01:2024-01-02", "--in-sample"),
        parse_window("2024-01-02:2024-01-03", "--out-of-sample"),
        axes,
        optuna=4,
        seed=11,
        jobs=2,
        top_k=1,  # only the in-sample best out of sample
        oos_all=False,
    )
    a = run_sweep(cfg, spec, tmp_path / "a", progress=False)
    b = run_sweep(cfg, dataclasses.replace(spec, jobs=1), tmp_path / "b", progress=False)
    assert (tmp_path / "a" / "sweep.json").read_text() == (
        tmp_path / "b" / "sweep.json"
    ).read_text()
    assert [p.is_run for p in a.points] == [p.is_run for p in b.points]
    # the points are the seeded TPE sampler's: asked again here, independently
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=11))
    dists = {
        "strategy.fast": optuna.distributions.IntDistribution(3, 30),
        "strategy.slow": optuna.distributions.IntDistribution(31, 90),
        "strategy.price": optuna.distributions.CategoricalDistribution(("close", "open")),
    }
    unique: list[dict[str, Any]] = []
    for q in (study.ask(dists).params for _ in range(4)):
        if q not in unique:
            unique.append(q)
    assert [p.params for p in a.points] == unique
    assert [p.oos_run is not None for p in a.points] == [p is a.chosen for p in a.points]


def test_bad_requests_fail_loudly(ch_dsn: str, ch_db: str, tmp_path: Path) -> None:
    cfg = config(ch_dsn, ch_db)
    with pytest.raises(ValueError, match=r"did you mean `fast`\? \(keys of strategy: fast, kind"):
        parse_param("strategy.fsat=5,10")
    with pytest.raises(ValueError, match=r"`strategy` is a section; name one of its keys"):
        parse_param("strategy=5")
    with pytest.raises(ValueError, match=r"unknown key `strat`.*keys of the top level"):
        parse_param("strat.fast=5")
    with pytest.raises(ValueError, match="needs --optuna"):
        parse_param("strategy.fast=5:20")
    with pytest.raises(ValueError, match="integer bounds"):
        parse_param("strategy.fast=2.5:20", optuna=True)
    with pytest.raises(ValueError, match="want PATH=v1,v2"):
        parse_param("strategy.fast=")
    with pytest.raises(ValueError, match="listed twice"):
        parse_param("strategy.fast=5,5")
    with pytest.raises(ValueError, match="end must be after the start"):
        parse_window("2024-01-03:2024-01-01", "--in-sample")
    # values are coerced to the field's type, or the point is rejected with the reason
    c, vals, why = point_config(cfg, {"execution.fee_bps": 5})
    assert c is not None and vals == {"execution.fee_bps": 5.0} and why == ""
    c, _, why = point_config(cfg, {"strategy.fast": "x"})
    assert c is None and why.startswith("strategy.fast: Input should be a valid integer")

    def spec(is_w: str, oos_w: str, *axes: Axis) -> SweepSpec:
        return SweepSpec(SOURCE, SYMBOLS, parse_window(is_w, "i"), parse_window(oos_w, "o"), axes)

    fast = parse_param("strategy.fast=5,10")
    cases = [
        (spec(IS, "2024-01-02T12:00:2024-01-05", fast), "overlap"),
        (spec(IS, "2024-03-01:2024-03-02", fast), r"--out-of-sample \[2024-03-01.*no data"),
        (spec(IS, OOS), "at least one --param"),
        (spec(IS, OOS, fast, fast), "given twice"),
        (spec(IS, OOS, parse_param("strategy.fast=60,70")), "no sweep point is a valid config"),
    ]
    for s, match in cases:
        out = tmp_path / uuid.uuid4().hex
        with pytest.raises(ValueError, match=match):
            run_sweep(cfg, s, out, progress=False)
        assert not (out / "sweep.json").exists()


def test_cli_verb_parses_and_fails_in_one_line(tmp_path: Path) -> None:
    from dataflows.cli import _verb
    from dataflows.cli_sweep import add_sweep_verbs

    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="verb")

    def config_args(s: argparse.ArgumentParser) -> None:
        s.add_argument("--config")
        s.add_argument("--set", action="append")

    add_sweep_verbs(sub, _verb, config_args)
    argv = ["sweep", "--source", SOURCE, "--in-sample", IS, "--out-of-sample", OOS]
    args = p.parse_args([*argv, "--param", "strategy.slowww=30", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="did you mean `slow`"):
        args.fn(args)
    args = p.parse_args(["stress", "--window", "ftx-2022-11", "--window", "luna-2022-05"])
    assert args.window == ["ftx-2022-11", "luna-2022-05"]

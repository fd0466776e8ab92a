"""What a backtest tells the user, on real Binance bars (file and real Kafka, real chDB): empty or
nonsensical requests fail with what the source holds and record no run; a symbol without bars
in the range is a warning; the summary counts bars per symbol, lists open positions, says where
its outputs went; the run's feature set is in `feature_sets`."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from dataflows.backtest import BacktestSpec, parse_time, run_backtest
from dataflows.cli import main
from dataflows.flow import config_feature_set
from dataflows.ingest import ingest_file
from infra.clickhouse import connect, count_final, ensure_tables, query_df
from schemas.config import Config, load_config
from tests.dataflows.flowkit import sma_config
from tests.paths import BARS_2024_01, ROOT


@pytest.fixture(autouse=True)
def _session_clickhouse(ch_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """CLI calls in this process use the session's chDB path; wide output (no wrapping)."""
    monkeypatch.setenv("CLICKHOUSE_DSN", ch_dsn)
    monkeypatch.setenv("COLUMNS", "300")


def _cfg(ch_dsn: str, ch_db: str, symbols: list[str] | None = None, **over) -> Config:
    return sma_config(symbols, clickhouse={"dsn": ch_dsn, "database": ch_db}, **over)


def _utc(ns: int) -> str:
    return datetime.fromtimestamp(ns // 10**9, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _holds(df: pl.DataFrame, symbols: list[str] | None = None) -> str:
    """Independent: what a bar frame holds per symbol, in the messages' wording."""
    per = (
        df.with_columns(pl.col("open_time").dt.epoch("ns").alias("t"))
        .group_by("symbol")
        .agg(pl.len().alias("n"), pl.col("t").min().alias("lo"), pl.col("t").max().alias("hi"))
        .sort("symbol")
    )
    return "; ".join(
        f"{s}: {n:,} bars from {_utc(lo)} to {_utc(hi)} UTC"
        for s, n, lo, hi in per.iter_rows()
        if symbols is None or s in symbols
    )


def _runs(client, db: str) -> int:
    return int(client.command(f"SELECT count() FROM {db}.runs FINAL"))


@pytest.fixture
def split_bars(tmp_path: Path) -> tuple[Path, pl.DataFrame]:
    """Real January 2024 bars, BTCUSDT on the 1st-3rd only and ETHUSDT on the 10th-12th only."""
    df = pl.read_parquet(BARS_2024_01)
    day = pl.col("open_time").dt.day()
    df = df.filter(
        ((pl.col("symbol") == "BTCUSDT") & day.is_between(1, 3))
        | ((pl.col("symbol") == "ETHUSDT") & day.is_between(10, 12))
    )
    path = tmp_path / "split.parquet"
    df.write_parquet(path)
    return path, df


@pytest.mark.parametrize("source", [f"file:{BARS_2024_01}", "kafka:md.bars.v1"])
def test_end_not_after_start_fails_before_anything_runs(
    source: str, ch_dsn: str, ch_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    t = parse_time("2024-01-10")
    for end in (t, parse_time("2024-01-03")):
        with pytest.raises(ValueError) as exc:
            BacktestSpec(source, ("BTCUSDT",), t, end)
        assert "--end (" in str(exc.value) and "--start (2024-01-10 00:00:00 UTC)" in str(exc.value)
    client = connect(ch_dsn, ch_db)
    assert int(client.command(f"SELECT count() FROM system.tables WHERE database = '{ch_db}'")) == 0
    # The command: exit 2 and a message naming both flags, no broker or store needed.
    rc = main(["backtest", "--source", source, "--start", "2024-01-10", "--end", "2024-01-10"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--start" in err and "--end" in err


def test_range_outside_the_file_fails_with_what_it_holds(ch_dsn: str, ch_db: str) -> None:
    cfg = _cfg(ch_dsn, ch_db)
    client = connect(ch_dsn, ch_db)
    ensure_tables(client, ch_db)
    spec = BacktestSpec(
        f"file:{BARS_2024_01}",
        ("BTCUSDT", "ETHUSDT"),
        parse_time("2023-06-01"),
        parse_time("2023-07-01"),
    )
    with pytest.raises(ValueError) as exc:
        run_backtest(cfg, spec, None, progress=False)
    assert str(exc.value) == (
        "nothing to replay for BTCUSDT, ETHUSDT between --start 2023-06-01 00:00:00 and "
        f"--end 2023-07-01 00:00:00 UTC; file:{BARS_2024_01} holds "
        + _holds(pl.read_parquet(BARS_2024_01))
    )
    assert _runs(client, ch_db) == 0
    assert int(client.command(f"SELECT count() FROM {ch_db}.bars")) == 0  # nothing ran


def test_symbol_absent_from_the_file_fails(ch_dsn: str, ch_db: str) -> None:
    cfg = _cfg(ch_dsn, ch_db, ["BTCUSDT", "ETHUSDT", "SOLUSDT"])
    client = connect(ch_dsn, ch_db)
    ensure_tables(client, ch_db)
    spec = BacktestSpec(f"file:{BARS_2024_01}", ("SOLUSDT", "BTCUSDT"))
    with pytest.raises(ValueError) as exc:
        run_backtest(cfg, spec, None, progress=False)
    assert str(exc.value) == (
        f"file:{BARS_2024_01} holds no bars for SOLUSDT (--symbols); it holds "
        + _holds(pl.read_parquet(BARS_2024_01))
    )
    assert _runs(client, ch_db) == 0


def test_the_command_prints_the_inventory_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["backtest", "--source", f"file:{BARS_2024_01}", "--start", "2023-06-01"]
    rc = main([*args, "--end", "2023-07-01", "--config", "examples/sma_cross.toml"])
    assert rc == 2
    err = " ".join(capsys.readouterr().err.split())
    assert err.startswith("error: nothing to replay for BTCUSDT, ETHUSDT")
    assert _holds(pl.read_parquet(BARS_2024_01)) in err


def test_a_symbol_without_bars_in_range_is_a_warning(
    split_bars: tuple[Path, pl.DataFrame],
    ch_dsn: str,
    ch_db: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, df = split_bars
    cfg = _cfg(ch_dsn, ch_db)
    spec = BacktestSpec(
        f"file:{path}", ("BTCUSDT", "ETHUSDT"), parse_time("2024-01-02"), parse_time("2024-01-03")
    )
    run_id, summary = run_backtest(cfg, spec, tmp_path / "out", progress=False)
    warning = (
        "ETHUSDT got no bars between --start 2024-01-02 00:00:00 and --end 2024-01-03 00:00:00 "
        f"UTC; file:{path} holds " + _holds(df, ["ETHUSDT"])
    )
    doc = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert doc["warnings"] == [warning]
    assert doc["bars_by_symbol"] == {"BTCUSDT": 1440, "ETHUSDT": 0}
    assert f"warning: {warning}" in capsys.readouterr().out
    client = connect(ch_dsn, ch_db)
    assert count_final(client, ch_db, "runs", run_id) == 1
    assert count_final(client, ch_db, "bars", run_id) == summary.n_bars == 1440


def test_symbols_the_file_holds_but_the_run_skips_are_named(
    split_bars: tuple[Path, pl.DataFrame],
    ch_dsn: str,
    ch_db: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A file with a symbol outside --symbols and one outside the config's universe: both are
    named in a note and in summary.json, never dropped without a word."""
    path, df = split_bars
    doge = df.filter(pl.col("symbol") == "ETHUSDT").with_columns(symbol=pl.lit("DOGEUSDT"))
    both = pl.concat([df, doge])
    mixed = tmp_path / "mixed.parquet"
    both.write_parquet(mixed)
    cfg = _cfg(ch_dsn, ch_db)  # universe BTCUSDT, ETHUSDT
    spec = BacktestSpec(f"file:{mixed}", ("BTCUSDT",))
    run_backtest(cfg, spec, tmp_path / "out", progress=False)
    out = " ".join(capsys.readouterr().out.split())
    assert (
        f"note: file:{mixed} also holds {_holds(both, ['ETHUSDT'])}; not replayed (not in "
        "--symbols: BTCUSDT)"
    ) in out
    assert (
        f"note: file:{mixed} also holds {_holds(both, ['DOGEUSDT'])}; not replayed (not in the "
        "config's `symbols`: BTCUSDT, ETHUSDT)"
    ) in out
    doc = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert doc["not_replayed"] == ["DOGEUSDT", "ETHUSDT"]
    assert doc["bars_by_symbol"] == {"BTCUSDT": 3 * 1440}
    # every symbol the file holds is replayed: nothing to say
    spec = BacktestSpec(f"file:{path}", ("BTCUSDT", "ETHUSDT"))
    run_backtest(cfg, spec, tmp_path / "all", progress=False)
    assert "not replayed" not in capsys.readouterr().out
    assert json.loads((tmp_path / "all" / "summary.json").read_text())["not_replayed"] == []


def test_a_run_without_trades_says_what_its_producer_and_the_risk_engine_did(
    ch_dsn: str, ch_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 40 bars: the 50-bar SMA never fills, so the rule never speaks
    cfg = _cfg(ch_dsn, ch_db)
    t0 = parse_time("2024-01-02")
    assert t0 is not None
    spec = BacktestSpec(f"file:{BARS_2024_01}", ("BTCUSDT",), t0, t0 + 40 * 60 * 10**9)
    run_backtest(cfg, spec, tmp_path / "quiet", progress=False)
    quiet = (
        "the run made no trades: its trading producer sma_cross_10_50 emitted 0 signals (its "
        "first signal can come at bar 51 of a symbol; the most any symbol got is 40)"
    )
    assert json.loads((tmp_path / "quiet" / "summary.json").read_text())["warnings"] == [quiet]
    assert f"warning: {quiet}" in " ".join(capsys.readouterr().out.split())
    # a day, every order over the risk engine's cap: the signals are there, the orders denied
    risk = {"enabled": True, "max_order_notional": {"max_notional": 1.0}}
    cfg = _cfg(ch_dsn, ch_db, risk=risk, sizing={"round_to_lot": True})
    spec = BacktestSpec(f"file:{BARS_2024_01}", ("BTCUSDT",), t0, t0 + 86_400 * 10**9)
    run_id, summary = run_backtest(cfg, spec, tmp_path / "denied", progress=False)
    assert summary.n_trades == 0
    client = connect(ch_dsn, ch_db)
    sig = query_df(
        client,
        f"SELECT direction, count() AS n FROM {ch_db}.signals FINAL WHERE run_id = %(r)s "
        "GROUP BY direction ORDER BY direction",
        {"r": run_id},
    )
    said = dict(sig.iter_rows())
    assert said[1] > 0 and said[-1] > 0
    den = query_df(
        client,
        f"SELECT rule, count() AS n FROM {ch_db}.order_denials FINAL WHERE run_id = %(r)s "
        "GROUP BY rule",
        {"r": run_id},
    )
    assert den["n"].sum() == said[1]  # every long signal's order, none of the exits (flat)
    (warning,) = json.loads((tmp_path / "denied" / "summary.json").read_text())["warnings"]
    assert warning.startswith(
        f"the run made no trades: its trading producer sma_cross_10_50 emitted "
        f"{said[1] + said[-1]} signals (direction -1: {said[-1]}, direction 1: {said[1]}); "
        f"the risk engine denied {said[1]} orders ("
    )


def test_bars_of_another_length_are_refused_or_replayed_as_configured(
    ch_dsn: str, ch_db: str, tmp_path: Path
) -> None:
    """A file does not say how long its bars are: hourly bars (the real January minutes,
    aggregated) under a 1-minute config are refused with the fix, before anything runs; with
    `bars.interval_s = 3600` they replay as hour bars (close an hour after the open)."""
    from dataflows.ingest import ingest_file

    hourly = (
        pl.read_parquet(BARS_2024_01)
        .sort("symbol", "open_time")
        .group_by_dynamic("open_time", every="1h", group_by="symbol")
        .agg(
            pl.col("open").first(),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("close").last(),
            pl.col("volume").sum(),
        )
    )
    path = tmp_path / "hourly.parquet"
    hourly.write_parquet(path)
    spec = BacktestSpec(f"file:{path}", ("BTCUSDT", "ETHUSDT"))
    client = connect(ch_dsn, ch_db)
    ensure_tables(client, ch_db)
    runs = _runs(client, ch_db)
    refusal = (
        f"file:{path} holds bars 3600 s apart (BTCUSDT: 3600 s, ETHUSDT: 3600 s) but the bar "
        "interval is 60 s ([bars] interval_s): set bars.interval_s = 3600 in the config (or "
        "--set bars.interval_s=3600); strategy and feature windows count bars"
    )
    with pytest.raises(ValueError) as exc:
        run_backtest(_cfg(ch_dsn, ch_db), spec, progress=False)
    assert str(exc.value) == refusal
    assert _runs(client, ch_db) == runs
    with pytest.raises(ValueError) as exc:  # nor are they published as minute bars
        ingest_file(path, "127.0.0.1:1", "bars", progress=False)
    assert str(exc.value) == refusal

    cfg = _cfg(ch_dsn, ch_db, bars={"interval_s": 3600})
    run_id, summary = run_backtest(cfg, spec, tmp_path / "h", progress=False)
    assert count_final(client, ch_db, "bars", run_id) == hourly.height == 2 * 31 * 24
    assert summary.n_bars == 31 * 24  # equity points: one per hour across the account
    got = query_df(
        client,
        f"SELECT DISTINCT interval_ns, toUnixTimestamp64Nano(ts_init) - "
        f"toUnixTimestamp64Nano(ts_event) AS lag FROM {ch_db}.bars FINAL WHERE run_id = %(r)s",
        {"r": run_id},
    )
    assert got.rows() == [(3600 * 10**9, 3600 * 10**9)]


def test_summary_counts_bars_per_symbol_and_states_open_positions(
    ch_dsn: str, ch_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _cfg(ch_dsn, ch_db)
    start, end = parse_time("2024-01-03"), parse_time("2024-01-10")
    assert start is not None and end is not None
    out = tmp_path / "out"
    spec = BacktestSpec(f"file:{BARS_2024_01}", ("BTCUSDT", "ETHUSDT"), start, end)
    run_id, _ = run_backtest(cfg, spec, out, progress=False)
    doc = json.loads((out / "summary.json").read_text())

    # Bars per symbol: the file's count in [start, end), by polars.
    bars = (
        pl.read_parquet(BARS_2024_01)
        .with_columns(pl.col("open_time").dt.epoch("ns").alias("t"))
        .filter(pl.col("t").is_between(start, end, closed="left"))
        .sort("symbol", "t")
    )
    expected = dict(bars.group_by("symbol").len().sort("symbol").iter_rows())
    assert doc["bars_by_symbol"] == expected == {"BTCUSDT": 10_080, "ETHUSDT": 10_080}

    # Open positions: net quantity from fills.csv, marked at the last close in the range.
    with (out / "fills.csv").open() as fh:
        fills = list(csv.DictReader(fh))
    opened = []
    for sym in ("BTCUSDT", "ETHUSDT"):
        mine = [f for f in fills if f["symbol"] == sym]
        net = sum(float(f["qty"]) * (1 if f["side"] == "buy" else -1) for f in mine)
        if abs(net) > 1e-9:
            last_buy = [f for f in mine if f["side"] == "buy"][-1]
            close = bars.filter(pl.col("symbol") == sym)["close"][-1]
            avg = float(last_buy["price"])  # long-only, all-in: one buy opens the position
            opened.append((sym, net, avg, close, net * close, (close - avg) * net))
    got = [
        (
            p["symbol"],
            p["qty"],
            p["avg_price"],
            p["mark_price"],
            p["mark_value"],
            p["unrealized_pnl"],
        )
        for p in doc["open_positions"]
    ]
    assert opened, "this range ends with positions open"
    assert [g[0] for g in got] == [o[0] for o in opened]
    for g, o in zip(got, opened, strict=True):
        assert g[1:] == pytest.approx(o[1:], rel=1e-9)
    assert doc["n_bars"] == 10_080  # the old key keeps its meaning (equity timestamps)

    text = capsys.readouterr().out
    for sym, n in expected.items():
        assert f"bars {sym}" in text and f"{n:,}" in text
    for sym, qty, _, mark, value, upnl in opened:
        assert f"open {sym}" in text
        assert f"qty {qty:.8g} @ {mark:,.2f}: value {value:,.2f}, unrealized PnL {upnl:+,.2f}" in (
            text
        )
    assert f"outputs: {out} (report.html, fills.csv, equity.csv, summary.json, equity.png)" in text
    assert f"rows: ClickHouse {ch_dsn}, database {ch_db}, run_id {run_id}" in text

    # The run's feature set is in `feature_sets`: every features row can be labelled from it.
    fs = config_feature_set(cfg)
    client = connect(ch_dsn, ch_db)
    rows = query_df(
        client,
        f"SELECT version, feature_set, columns, specs FROM {ch_db}.feature_sets FINAL "
        "WHERE run_id = %(r)s",
        {"r": run_id},
    )
    assert rows.rows() == [(fs.version, fs.name, list(fs.columns), fs.spec_texts())]
    n_features = count_final(client, ch_db, "features", run_id)
    labelled = client.command(
        f"SELECT count() FROM (SELECT version, length(values) AS n FROM {ch_db}.features FINAL "
        "WHERE run_id = {r:String}) AS f INNER JOIN (SELECT version, length(columns) AS n "
        f"FROM {ch_db}.feature_sets FINAL WHERE run_id = {{r:String}}) AS s "
        "ON f.version = s.version AND f.n = s.n",
        parameters={"r": run_id},
    )
    assert int(labelled) == n_features == 2 * 10_080


@pytest.mark.kafka
def test_kafka_source_reports_what_the_topic_holds(
    split_bars: tuple[Path, pl.DataFrame],
    kafka_topic,
    kafka_bootstrap: str,
    ch_dsn: str,
    ch_db: str,
    tmp_path: Path,
) -> None:
    path, df = split_bars
    topic = kafka_topic(partitions=2, suffix="md.bars.v1")
    assert ingest_file(path, kafka_bootstrap, "bars", topic=topic, progress=False) == df.height
    cfg = _cfg(
        ch_dsn, ch_db, ["BTCUSDT", "ETHUSDT", "SOLUSDT"], kafka={"bootstrap": kafka_bootstrap}
    )
    client = connect(ch_dsn, ch_db)
    ensure_tables(client, ch_db)
    source = f"kafka:{topic}"

    # Held but not in the range: a warning, and the run stands.
    jan2 = (parse_time("2024-01-02"), parse_time("2024-01-03"))
    spec = BacktestSpec(source, ("BTCUSDT", "ETHUSDT"), *jan2, publish=False)
    run_id, _ = run_backtest(cfg, spec, tmp_path / "ok", progress=False)
    doc = json.loads((tmp_path / "ok" / "summary.json").read_text())
    assert doc["bars_by_symbol"] == {"BTCUSDT": 1440, "ETHUSDT": 0}
    assert doc["warnings"] == [
        "ETHUSDT got no bars between --start 2024-01-02 00:00:00 and --end 2024-01-03 00:00:00 "
        f"UTC; {source} holds " + _holds(df, ["ETHUSDT"])
    ]
    assert _runs(client, ch_db) == count_final(client, ch_db, "runs", run_id) == 1

    # A range outside the topic: the replay finds nothing, the topic's inventory says why.
    spec = BacktestSpec(
        source,
        ("BTCUSDT", "ETHUSDT"),
        parse_time("2023-06-01"),
        parse_time("2023-07-01"),
        publish=False,
    )
    with pytest.raises(ValueError) as exc:
        run_backtest(cfg, spec, None, progress=False)
    assert str(exc.value) == (
        "the replay produced no bars for BTCUSDT, ETHUSDT between --start 2023-06-01 00:00:00 "
        f"and --end 2023-07-01 00:00:00 UTC; {source} holds " + _holds(df)
    )

    # A symbol the topic does not hold.
    spec = BacktestSpec(source, ("SOLUSDT",), publish=False)
    with pytest.raises(ValueError) as exc:
        run_backtest(cfg, spec, None, progress=False)
    assert str(exc.value) == f"{source} holds no bars for SOLUSDT (--symbols); it holds " + _holds(
        df
    )
    assert _runs(client, ch_db) == 1  # neither failure recorded a run


def test_rerun_leaves_no_stale_rows_of_an_older_engine(ch_dsn: str, ch_db: str) -> None:
    """Rows a run id holds from before (e.g. an older engine that wrote per-symbol equity with
    other keys) are gone after the rerun: the report reads only what this run wrote."""
    from infra.clickhouse import BatchWriter
    from schemas.messages import EquityPoint

    cfg = _cfg(ch_dsn, ch_db)
    spec = BacktestSpec(f"file:{BARS_2024_01}", ("BTCUSDT", "ETHUSDT"),
                        parse_time("2024-01-01"), parse_time("2024-01-02"))  # fmt: skip
    run_id, first = run_backtest(cfg, spec, progress=False)
    client = connect(ch_dsn, ch_db)
    stale = BatchWriter(client, ch_db, run_id)
    stale.add("equity", [EquityPoint("BTCUSDT", 1_704_067_200 * 10**9, 0, 1.0, 0.0, 1.0)])
    stale.flush()
    again, second = run_backtest(cfg, spec, progress=False)
    assert again == run_id and second == first
    accounts = client.command(
        f"SELECT groupUniqArray(account) FROM {ch_db}.equity FINAL WHERE run_id = %(r)s",
        parameters={"r": run_id},
    )
    assert "BTCUSDT" not in str(accounts)


def test_the_bar_length_check_names_a_fix_that_exists_and_ignores_one_odd_bar(
    tmp_path: Path,
) -> None:
    """Half-second bars: `interval_s` takes whole seconds, so no `= 0` advice. One off-grid bar
    among real minutes does not move a symbol's spacing (it is dead-lettered in the flow), and
    a symbol with a single bar has no spacing to judge."""
    from dataflows.io.files import check_bar_interval, normalized, scan

    minutes = pl.read_parquet(BARS_2024_01)
    btc = minutes.filter(pl.col("symbol") == "BTCUSDT").head(1_000)
    t0 = btc["open_time"][0]
    fast = btc.with_columns(
        open_time=pl.datetime_range(
            t0, t0 + 999 * pl.duration(milliseconds=500), "500ms", eager=True
        )
    )
    path = tmp_path / "fast.parquet"
    fast.write_parquet(path)
    with pytest.raises(ValueError) as exc:
        check_bar_interval(normalized(scan(path), "bars"), 60 * 10**9, "file:fast")
    assert str(exc.value) == (
        "file:fast holds bars 0.5 s apart (BTCUSDT: 0.5 s) but the bar interval is 60 s "
        "([bars] interval_s): bars.interval_s takes whole seconds: resample the file to a "
        "whole-second bar"
    )
    odd = btc.head(1).with_columns(pl.col("open_time") + pl.duration(seconds=30))
    one = minutes.filter(pl.col("symbol") == "ETHUSDT").head(1).with_columns(symbol=pl.lit("X"))
    mixed = tmp_path / "mixed.parquet"
    pl.concat([minutes, odd, one]).write_parquet(mixed)
    check_bar_interval(normalized(scan(mixed), "bars"), 60 * 10**9, "file:mixed")  # no error


def test_dead_lettered_rows_are_counted_and_named_in_the_summary(
    ch_dsn: str, ch_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Hostile rows among real bars (a NaN close, a negative open, an exact duplicate) go to
    dead letters and the run says so: a note with the count and reasons, summary.json's
    `dead_letters` equal to the table's own count per reason; a clean file says nothing."""
    df = pl.read_parquet(BARS_2024_01).filter(pl.col("open_time").dt.day() == 2)
    btc = df.filter(pl.col("symbol") == "BTCUSDT")
    bad = pl.concat(
        [
            btc.slice(100, 1).with_columns(close=pl.lit(float("nan"))),
            btc.slice(200, 1).with_columns(open=pl.lit(-5.0)),
            btc.slice(300, 1),
        ]
    )
    path = tmp_path / "hostile.parquet"
    pl.concat([df, bad]).write_parquet(path)
    cfg = _cfg(ch_dsn, ch_db)
    run_id, _ = run_backtest(
        cfg, BacktestSpec(f"file:{path}", ("BTCUSDT", "ETHUSDT")), tmp_path / "out", progress=False
    )
    out = " ".join(capsys.readouterr().out.split())
    client = connect(ch_dsn, ch_db)
    table = query_df(
        client,
        f"SELECT reason, count() AS n FROM {ch_db}.dead_letters FINAL WHERE run_id = %(r)s "
        "GROUP BY reason",
        {"r": run_id},
    )
    want = {r: int(n) for r, n in table.iter_rows()}
    assert sum(want.values()) == 3 and any(r.startswith("bad close") for r in want)
    doc = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert doc["dead_letters"] == want
    assert "note: 3 messages went to dead letters (" in out
    assert all(f"{r}: {n:,}" in out for r, n in want.items())
    assert f"table {ch_db}.dead_letters, run_id {run_id}" in out
    clean = tmp_path / "clean.parquet"
    df.write_parquet(clean)
    run_backtest(
        cfg,
        BacktestSpec(f"file:{clean}", ("BTCUSDT", "ETHUSDT")),
        tmp_path / "clean",
        progress=False,
    )
    assert "dead letters" not in capsys.readouterr().out
    assert json.loads((tmp_path / "clean" / "summary.json").read_text())["dead_letters"] == {}


SYMBOLS = ("BTCUSDT", "ETHUSDT")


def test_a_risk_halt_is_said_with_when_why_and_what_it_denied(
    ch_dsn: str, ch_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The margin example with a tight drawdown breaker (0.2%) on the shipped real month: the
    account halts early and idles for the rest of it. The summary warns with the halt's time
    and reason (the `trading_state` table's own row), the share of the run after it and the
    denials per rule (the `order_denials` table's counts); summary.json's `risk` holds the
    same; a run the engine never touched says nothing about risk."""
    base = load_config(ROOT / "examples" / "risk_limits.toml").model_dump()
    base["clickhouse"] = {**base["clickhouse"], "dsn": ch_dsn, "database": ch_db}
    base["risk"]["drawdown_breaker"]["max_drawdown"] = 0.002
    cfg = Config.model_validate(base)
    run_id, _ = run_backtest(
        cfg, BacktestSpec(f"file:{BARS_2024_01}", SYMBOLS), tmp_path / "out", progress=False
    )
    out = " ".join(capsys.readouterr().out.split())
    client = connect(ch_dsn, ch_db)
    run = {"r": run_id}
    changes = query_df(
        client,
        f"SELECT toUnixTimestamp64Nano(ts_event) AS t, new, reason FROM {ch_db}.trading_state "
        "FINAL WHERE run_id = %(r)s AND symbol = '' ORDER BY ts_event",
        run,
    )
    assert changes.height >= 1 and changes["new"][-1] == "halted", "a 0.2% breaker trips"
    t, new, reason = next(r for r in changes.iter_rows() if r[1] != "active")
    denied = query_df(
        client,
        f"SELECT rule, count() AS n FROM {ch_db}.order_denials FINAL WHERE run_id = %(r)s "
        "GROUP BY rule ORDER BY n DESC, rule",
        run,
    )
    want = {r: int(n) for r, n in denied.iter_rows()}
    assert want.get("trading_state", 0) > 0, "orders after the halt are denied by the state"
    assert f"warning: risk: trading went {new.upper()} at {_utc(t)} UTC ({reason})" in out
    assert any("drawdown" in r for r in changes["reason"])
    assert "HALTED for the rest of the run" in out
    assert f"{sum(want.values()):,} orders denied (" in out
    assert all(f"{r} {n:,}" in out for r, n in list(want.items())[:5])
    assert f"tables {ch_db}.trading_state and {ch_db}.order_denials, run_id {run_id}" in out
    doc = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert doc["risk"]["denials"] == want
    assert doc["risk"]["state_changes"][-1]["new"] == "halted"
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["risk"] == doc["risk"]  # the page's document: the same story
    assert any(w.startswith("risk: trading went ") for w in report["warnings"])
    plain = _cfg(ch_dsn, ch_db)  # the SMA example: no rule binds
    run_backtest(
        plain, BacktestSpec(f"file:{BARS_2024_01}", SYMBOLS), tmp_path / "plain", progress=False
    )
    assert "risk:" not in capsys.readouterr().out
    doc = json.loads((tmp_path / "plain" / "summary.json").read_text())
    assert doc["risk"] == {"state_changes": [], "denials": {}}

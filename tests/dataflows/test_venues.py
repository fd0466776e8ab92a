"""A symbol's name is unique per venue only: Binance spot and USD-M futures both list BTCUSDT.
On the real captures of 2024-08-08 (spot and futures, same minutes): a trade file is read for
the config's `venue` and says what other venues it holds; a file holding only another venue's
trades fails with the setting that replays them; the flow dead-letters a trade from another
venue (a Kafka topic fed twice); `data list` shows one row per (symbol, venue); ingesting
every venue of a file where one name trades on two is refused."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from dataflows.backtest import BacktestSpec, run_backtest, spot_markets_elsewhere
from dataflows.datalist import file_inventory, print_inventory
from dataflows.ingest import ingest_file
from dataflows.io.files import FileSource, normalized, scan, to_messages, venue_clashes
from infra.clickhouse import connect, query_df
from operators.validation import Limits, trade_problem
from schemas.config import BarsConfig, MarketConfig, ValidationConfig
from schemas.messages import Bar, DeadLetter, Trade
from tests.dataflows.flowkit import batches, run_flow, sma_config
from tests.paths import SHARED, TRADES, USDM_TRADES

AUG8 = pl.col("trade_time") >= pl.datetime(2024, 8, 8, 23, 54, time_zone="UTC")


@pytest.fixture(autouse=True)
def _session_clickhouse(ch_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLICKHOUSE_DSN", ch_dsn)
    monkeypatch.setenv("COLUMNS", "300")


@pytest.fixture
def both_venues(tmp_path: Path) -> tuple[Path, pl.DataFrame]:
    """One file with the spot and the USD-M futures trades of the same real minutes."""
    spot = pl.read_parquet(TRADES).filter(AUG8)
    df = pl.concat([spot, pl.read_parquet(USDM_TRADES).select(spot.columns)])
    path = tmp_path / "spot_and_usdm.parquet"
    df.write_parquet(path)
    return path, df


def _minutes(df: pl.DataFrame) -> dict[str, int]:
    """Independent: the distinct 1m buckets each symbol's trades touch."""
    per = (
        df.with_columns((pl.col("trade_time").dt.epoch("ms") // 60_000).alias("m"))
        .group_by("symbol")
        .agg(pl.col("m").n_unique())
    )
    return dict(per.iter_rows())


def test_a_trade_from_another_venue_is_refused_by_name() -> None:
    t = Trade("BTCUSDT", 10**18, 10**18, 1, 60_000.0, 0.1, "buy", "binance_usdm_futures")
    assert trade_problem(t, {"BTCUSDT"}) == (
        "trade from venue 'binance_usdm_futures', not the config's venue 'binance_spot' "
        "(the same name on another venue is another instrument)"
    )
    lim = Limits.from_config(ValidationConfig(), BarsConfig(), "binance_usdm_futures")
    assert lim.venue == "binance_usdm_futures" and trade_problem(t, {"BTCUSDT"}, lim) is None
    spot = Trade("BTCUSDT", 10**18, 10**18, 1, 60_000.0, 0.1, "buy")
    assert trade_problem(spot, {"BTCUSDT"}, lim) is not None


def test_trades_keep_their_venue_and_are_read_for_one() -> None:
    lf = pl.concat([scan(TRADES), scan(USDM_TRADES).select(scan(TRADES).collect_schema().names())])
    spot = to_messages(normalized(lf, "trades").collect(), "trades")
    assert {t.venue for t in spot} == {"binance_spot"}
    assert len(spot) == pl.read_parquet(TRADES).height
    fut = to_messages(normalized(lf, "trades", venue="binance_usdm_futures").collect(), "trades")
    assert {t.venue for t in fut} == {"binance_usdm_futures"}
    assert len(fut) == pl.read_parquet(USDM_TRADES).height
    every = normalized(lf, "trades", venue=None)
    assert venue_clashes(every) == {
        "BTCUSDT": ["binance_spot", "binance_usdm_futures"],
        "ETHUSDT": ["binance_spot", "binance_usdm_futures"],
    }
    assert venue_clashes(normalized(scan(TRADES), "trades", venue=None)) == {}
    # a file without a venue column is the tape of the venue it is read for
    bare = pl.read_parquet(USDM_TRADES).drop("venue").lazy()
    got = to_messages(normalized(bare, "trades", venue="binance_usdm_futures").collect(), "trades")
    assert {t.venue for t in got} == {"binance_usdm_futures"}


def test_data_list_has_a_row_per_symbol_and_venue(
    both_venues: tuple[Path, pl.DataFrame], capsys: pytest.CaptureFixture[str]
) -> None:
    path, df = both_venues
    data, kind = file_inventory(str(path))
    assert kind == "trades"
    expected = df.group_by("symbol", "venue").len().sort("symbol", "venue")
    assert [(d.symbol, d.venue, d.count) for d in data] == list(expected.iter_rows())
    from rich.console import Console

    print_inventory(data, "t", Console(width=200))
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "BTCUSDT" in ln]
    assert len(lines) == 2 and "binance_usdm_futures" in lines[1]
    spot_only, _ = file_inventory(str(path), venue="binance_spot")
    assert [(d.symbol, d.venue) for d in spot_only] == [
        ("BTCUSDT", "binance_spot"),
        ("ETHUSDT", "binance_spot"),
    ]


def test_a_backtest_replays_the_configs_venue_and_names_the_others(
    both_venues: tuple[Path, pl.DataFrame],
    ch_dsn: str,
    ch_db: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, df = both_venues
    cfg = sma_config(None, clickhouse={"dsn": ch_dsn, "database": ch_db})
    run_id, _ = run_backtest(
        cfg, BacktestSpec(f"file:{path}", ()), tmp_path / "spot", progress=False
    )
    out = " ".join(capsys.readouterr().out.split())
    assert (
        f"note: file:{path} also holds other venues' trades: BTCUSDT (binance_usdm_futures): "
        in out
    )
    assert "not replayed (the config's venue is 'binance_spot': `venue`)" in out
    doc = json.loads((tmp_path / "spot" / "summary.json").read_text())
    assert doc["other_venues"] == {"binance_usdm_futures": ["BTCUSDT", "ETHUSDT"]}
    spot = df.filter(pl.col("venue") == "binance_spot")
    assert doc["bars_by_symbol"] == _minutes(spot)  # the spot tape's minutes, nothing merged
    client = connect(ch_dsn, ch_db)
    bars = query_df(
        client,
        f"SELECT symbol, count() AS n FROM {ch_db}.bars FINAL WHERE run_id = '{run_id}' "
        "GROUP BY symbol ORDER BY symbol",
    )
    assert dict(zip(bars["symbol"], bars["n"], strict=True)) == _minutes(spot)

    # The futures tape alone: refused with the setting that replays it ...
    with pytest.raises(ValueError) as exc:
        run_backtest(cfg, BacktestSpec(f"file:{USDM_TRADES}", ()), None, progress=False)
    msg = str(exc.value)
    assert msg.startswith(
        f"file:{USDM_TRADES} holds BTCUSDT, ETHUSDT trades only from binance_usdm_futures, not "
        "from the config's venue 'binance_spot' (BTCUSDT (binance_usdm_futures): 21,313 trades"
    )
    assert msg.endswith(
        'set venue = "binance_usdm_futures" in the config (or --set '
        "venue=binance_usdm_futures) and that venue's [markets.<SYMBOL>] filters"
    )
    # ... which does: its own bars, with open prices of the futures tape
    fut_cfg = cfg.model_copy(update={"venue": "binance_usdm_futures"})
    run_id, _ = run_backtest(
        fut_cfg, BacktestSpec(f"file:{path}", ()), tmp_path / "fut", progress=False
    )
    said = " ".join(capsys.readouterr().out.split())
    assert (
        "note: markets BTCUSDT, ETHUSDT use Binance spot's filters (the defaults) but the "
        "config's venue is 'binance_usdm_futures'"
    ) in said
    assert spot_markets_elsewhere(cfg, ["BTCUSDT"]) == []  # spot: its own filters
    own = fut_cfg.model_copy(
        update={
            "markets": {
                **fut_cfg.markets,
                "BTCUSDT": MarketConfig(tick_size=0.1, lot_size=0.001, min_notional=100.0),
            }
        }
    )
    assert spot_markets_elsewhere(own, ["BTCUSDT", "ETHUSDT"]) == ["ETHUSDT"]
    doc = json.loads((tmp_path / "fut" / "summary.json").read_text())
    usdm = df.filter(pl.col("venue") == "binance_usdm_futures")
    assert doc["bars_by_symbol"] == _minutes(usdm)
    assert doc["other_venues"] == {"binance_spot": ["BTCUSDT", "ETHUSDT"]}
    first = query_df(
        client,
        f"SELECT open FROM {ch_db}.bars FINAL WHERE run_id = '{run_id}' AND "
        "symbol = 'BTCUSDT' ORDER BY ts_event LIMIT 1",
    )["open"][0]
    assert (
        first
        == usdm.filter(pl.col("symbol") == "BTCUSDT").sort("trade_time", "trade_id")["price"][0]
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_the_flow_dead_letters_another_venues_trades(workers: int) -> None:
    """A topic fed with both tapes (e.g. two ingests): only the config's venue makes bars."""
    spot = to_messages(normalized(scan(TRADES), "trades").collect(), "trades")
    fut = to_messages(
        normalized(scan(USDM_TRADES), "trades", venue="binance_usdm_futures").collect(), "trades"
    )
    mixed = sorted(spot + fut, key=lambda t: (t.ts_event, t.venue))
    out = run_flow(sma_config(None), batches(mixed, 1000), kind="trades", workers=workers)
    dead = [m for m in out if isinstance(m, DeadLetter)]
    assert len(dead) == len(fut)
    assert {d.reason for d in dead} == {
        "trade from venue 'binance_usdm_futures', not the config's venue 'binance_spot' "
        "(the same name on another venue is another instrument)"
    }
    alone = run_flow(sma_config(None), FileSource(TRADES), kind="trades", workers=workers)
    key = lambda b: (b.symbol, b.ts_event)  # noqa: E731
    assert sorted((m for m in out if isinstance(m, Bar)), key=key) == sorted(
        (m for m in alone if isinstance(m, Bar)), key=key
    )


def test_ingesting_every_venue_of_a_clashing_file_is_refused(
    both_venues: tuple[Path, pl.DataFrame],
) -> None:
    path, _ = both_venues
    with pytest.raises(ValueError) as exc:  # refused before any broker is asked
        ingest_file(path, "127.0.0.1:1", "trades", venue=None, progress=False)
    assert str(exc.value) == (
        f"{path} holds BTCUSDT on binance_spot, binance_usdm_futures; ETHUSDT on binance_spot, "
        "binance_usdm_futures: the same name on two venues is two instruments; ingest one venue "
        "per topic (--venue VENUE, and --topic for the other)"
    )
    with pytest.raises(ValueError) as exc:  # the futures tape under the spot default
        ingest_file(USDM_TRADES, "127.0.0.1:1", "trades", progress=False)
    assert str(exc.value).endswith(
        "; it holds binance_usdm_futures data, not binance_spot's: --venue binance_usdm_futures"
    )


LEAN_BARS = SHARED / "small" / "lean_sample_crypto_trade_bars.parquet"


@pytest.mark.skipif(not LEAN_BARS.exists(), reason="needs ../shared/data")
def test_bar_files_with_a_venue_column_replay_one_venue(
    ch_dsn: str, ch_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """QuantConnect's real Bybit 1m bars of 2022-12-13: spot BTCUSDT and the BTCUSDT perpetual,
    one name, two instruments (Lean's market + security type become our venue column)."""
    lean = pl.read_parquet(LEAN_BARS).filter(pl.col("symbol") == "BTCUSDT")
    df = lean.select(
        pl.col("symbol").cast(pl.String),
        pl.concat_str(
            pl.col("market").cast(pl.String), pl.col("security_type").cast(pl.String), separator="_"
        ).alias("venue"),
        pl.col("bar_start").alias("open_time"),
        "open",
        "high",
        "low",
        "close",
        "volume",
    )
    path = tmp_path / "bybit.parquet"
    df.write_parquet(path)
    counts = dict(df.group_by("venue").len().iter_rows())
    assert counts["bybit_crypto"] == 1440 and counts["bybit_cryptofuture"] == 721
    data, kind = file_inventory(str(path))
    assert kind == "bars"
    assert {d.venue: d.count for d in data} == counts
    assert all(d.duplicates == 0 for d in data)  # one venue's bars never collide with another's
    cfg = sma_config(["BTCUSDT"], clickhouse={"dsn": ch_dsn, "database": ch_db})
    with pytest.raises(ValueError, match=r"holds BTCUSDT bars only from .*bybit_crypto, "):
        run_backtest(cfg, BacktestSpec(f"file:{path}", ()), None, progress=False)
    spot = cfg.model_copy(update={"venue": "bybit_crypto"})
    run_backtest(spot, BacktestSpec(f"file:{path}", ()), tmp_path / "out", progress=False)
    doc = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert doc["bars_by_symbol"] == {"BTCUSDT": 1440}
    assert "bybit_cryptofuture" in doc["other_venues"]
    assert "also holds other venues' bars: BTCUSDT (" in " ".join(capsys.readouterr().out.split())
    with pytest.raises(ValueError, match=r"BTCUSDT on .*bybit_crypto, bybit_cryptofuture"):
        ingest_file(path, "127.0.0.1:1", "bars", venue=None, progress=False)

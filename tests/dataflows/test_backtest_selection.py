"""Which symbols a backtest replays. Without --symbols: the config's symbols that the source
holds, on the whole account, the others named (a BTC-only file under the BTC+ETH example config
replays BTC, as the same run as `--symbols BTCUSDT`); a file holding none of them fails naming
the config's `symbols`; an asked-for symbol the file lacks still fails (--symbols); a
walk-forward decides this before it builds its training set."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from dataflows.backtest import BacktestSpec, plan_file_replay, run_backtest
from dataflows.cli import main
from dataflows.walkforward import run_walk_forward
from infra.clickhouse import connect, count_final
from schemas.config import load_config
from tests.dataflows.flowkit import sma_config
from tests.paths import BARS_2024_01, ROOT


@pytest.fixture(autouse=True)
def _session_clickhouse(ch_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLICKHOUSE_DSN", ch_dsn)
    monkeypatch.setenv("COLUMNS", "300")


@pytest.fixture
def btc_only(tmp_path: Path) -> Path:
    """Real January 2024 BTCUSDT bars, the first week, without ETHUSDT."""
    df = pl.read_parquet(BARS_2024_01).filter(
        (pl.col("symbol") == "BTCUSDT") & (pl.col("open_time").dt.day() <= 7)
    )
    path = tmp_path / "btc_only.parquet"
    df.write_parquet(path)
    return path


def test_without_symbols_a_file_replays_the_config_symbols_it_holds(
    btc_only: Path, ch_dsn: str, ch_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = sma_config(None, clickhouse={"dsn": ch_dsn, "database": ch_db})  # BTCUSDT, ETHUSDT
    plan = plan_file_replay(BacktestSpec(f"file:{btc_only}", ()), cfg)
    assert (plan.spec.symbols, plan.absent) == (("BTCUSDT",), ["ETHUSDT"])
    run_id, summary = run_backtest(
        cfg, BacktestSpec(f"file:{btc_only}", ()), tmp_path / "d", progress=False
    )
    out = " ".join(capsys.readouterr().out.split())
    assert (
        f"note: file:{btc_only} holds no bars of the config's ETHUSDT; replayed BTCUSDT only, "
        "on the whole account"
    ) in out
    doc = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert doc["absent"] == ["ETHUSDT"] and doc["symbols"] == ["BTCUSDT"]
    assert doc["bars_by_symbol"] == {"BTCUSDT": 7 * 1440}
    assert summary.n_trades > 0  # it traded: all-in on the whole account
    # the same run as asking for BTCUSDT: same id, same numbers, nothing said about ETHUSDT
    again, same = run_backtest(
        cfg, BacktestSpec(f"file:{btc_only}", ("BTCUSDT",)), tmp_path / "e", progress=False
    )
    assert again == run_id and same == summary
    assert json.loads((tmp_path / "e" / "summary.json").read_text())["absent"] == []
    assert "holds no bars of the config's" not in capsys.readouterr().out
    assert count_final(connect(ch_dsn, ch_db), ch_db, "runs", run_id) == 1


def test_a_file_with_none_of_the_config_symbols_names_the_config(
    btc_only: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cfg = tmp_path / "sol.toml"
    cfg.write_text(
        (ROOT / "examples" / "sma_cross.toml")
        .read_text()
        .replace('symbols = ["BTCUSDT", "ETHUSDT"]', 'symbols = ["SOLUSDT", "ETHUSDT"]')
    )
    assert load_config(cfg).symbols == ["SOLUSDT", "ETHUSDT"]
    assert main(["backtest", "--source", f"file:{btc_only}", "--config", str(cfg)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert (
        f"file:{btc_only} holds no bars for ETHUSDT, SOLUSDT (the config's `symbols`); it holds "
        "BTCUSDT: 10,080 bars"
    ) in err
    # asked for by name, a symbol the file lacks is refused even though another is held
    assert (
        main(
            [
                "backtest",
                "--source",
                f"file:{btc_only}",
                "--config",
                str(ROOT / "examples" / "sma_cross.toml"),
                "--symbols",
                "BTCUSDT,ETHUSDT",
            ]
        )
        == 2
    )
    assert "holds no bars for ETHUSDT (--symbols)" in " ".join(capsys.readouterr().err.split())


def test_a_walk_forward_refuses_a_bad_selection_before_building_its_training_set(
    btc_only: Path, ch_dsn: str, ch_db: str, tmp_path: Path
) -> None:
    cfg = load_config(ROOT / "examples" / "xgb_trend_1m.toml")
    cfg = cfg.model_copy(update={"clickhouse": cfg.clickhouse.model_copy(update={"dsn": ch_dsn})})
    spec = BacktestSpec(f"file:{btc_only}", ("BTCUSDT", "ETHUSDT"))
    with pytest.raises(ValueError, match=r"holds no bars for ETHUSDT \(--symbols\)"):
        run_walk_forward(cfg, spec, tmp_path / "wf", "train=3d,test=2d", progress=False)
    assert not (tmp_path / "wf" / "dataset.parquet").exists()


def test_a_kafka_topic_without_one_of_the_config_symbols_is_a_note_too(
    btc_only: Path,
    kafka_topic,
    kafka_bootstrap: str,
    ch_dsn: str,
    ch_db: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The account waits for ETH, which never comes; at the end of the replay it books BTC
    exactly as the file replay of the same bars without ETH selected does."""
    from dataflows.ingest import ingest_file

    topic = kafka_topic(partitions=2, suffix="md.bars.v1")
    assert ingest_file(btc_only, kafka_bootstrap, "bars", topic=topic, progress=False) == 7 * 1440
    cfg = sma_config(
        None, clickhouse={"dsn": ch_dsn, "database": ch_db}, kafka={"bootstrap": kafka_bootstrap}
    )
    spec = BacktestSpec(f"kafka:{topic}", (), publish=False)
    _, summary = run_backtest(cfg, spec, tmp_path / "k", progress=False)
    out = " ".join(capsys.readouterr().out.split())
    assert (
        f"note: kafka:{topic} holds no bars of the config's ETHUSDT; replayed BTCUSDT only" in out
    )
    doc = json.loads((tmp_path / "k" / "summary.json").read_text())
    assert doc["absent"] == ["ETHUSDT"] and doc["bars_by_symbol"] == {"BTCUSDT": 7 * 1440}
    assert doc["warnings"] == []
    _, from_file = run_backtest(cfg, BacktestSpec(f"file:{btc_only}", ()), None, progress=False)
    assert summary == from_file

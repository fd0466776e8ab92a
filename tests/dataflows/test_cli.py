"""The `cryptoflow` command as users run it: help on every verb, clear errors on bad input, and
byte-identical backtest outputs on rerun (separate processes, embedded ClickHouse)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dataflows.cli import main, parser
from dataflows.io.files import FileSource
from tests.dataflows.flowkit import canonical, run_flow, sma_config
from tests.paths import BARS_2024_01, ROOT

VERBS = [["infra"], ["ingest"], ["ingest", "file"], ["backtest"], ["paper"], ["demo"]]


@pytest.mark.parametrize("verb", VERBS, ids=lambda v: " ".join(v))
def test_every_verb_has_help(verb: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parser().parse_args([*verb, "--help"])
    assert exc.value.code == 0
    assert "usage: cryptoflow" in capsys.readouterr().out


@pytest.fixture(autouse=True)
def _session_clickhouse(ch_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process calls must use the session's chDB path (one path per process)."""
    monkeypatch.setenv("CLICKHOUSE_DSN", ch_dsn)


def test_bad_config_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[strategy]\nfast = 50\nslow = 10\n")
    rc = main(["backtest", "--source", f"file:{BARS_2024_01}", "--config", str(bad)])
    assert rc == 2
    assert "fast (50) must be < strategy.slow (10)" in capsys.readouterr().err


def test_bad_source_and_missing_file_are_clear_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backtest", "--source", "s3:bucket/x"]) == 2
    assert "kafka:<topic> or file:<path>" in capsys.readouterr().err
    assert main(["backtest", "--source", "file:/nonexistent.parquet"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["backtest", "--source", f"file:{BARS_2024_01}", "--workers", "0"]) == 2
    assert ">= 1" in capsys.readouterr().err


def _backtest(out: Path, data_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CRYPTOFLOW_DATA_DIR": str(data_dir)}
    env.pop("CLICKHOUSE_DSN", None)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "dataflows.cli",
            "backtest",
            "--source",
            f"file:{BARS_2024_01}",
            "--start",
            "2024-01-03",
            "--end",
            "2024-01-10",
            "--symbols",
            "BTCUSDT,ETHUSDT",
            "--config",
            "examples/sma_cross.toml",
            "--out",
            str(out),
            "--no-progress",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )


def test_backtest_command_reruns_byte_identical(tmp_path: Path) -> None:
    first = _backtest(tmp_path / "a", tmp_path / "d1")
    _backtest(tmp_path / "b", tmp_path / "d1")  # same store: the run replaces its own rows
    _backtest(tmp_path / "c", tmp_path / "d2")  # fresh store
    _backtest(tmp_path / "d", tmp_path / "d3", "--processes", "2")  # a 2-process Bytewax cluster
    _backtest(tmp_path / "e", tmp_path / "d4", "--workers", "2")
    for name in ("fills.csv", "equity.csv", "summary.json", "equity.png"):
        a = (tmp_path / "a" / name).read_bytes()
        for other in "bcde":
            assert a == (tmp_path / other / name).read_bytes(), (other, name)
    assert "final equity" in first.stdout
    header = (tmp_path / "a" / "fills.csv").read_text().splitlines()[0]
    assert header == "ts_event,symbol,side,price,qty,fee"


def test_speed_paces_the_replay_against_wall_clock() -> None:
    """30 one-minute bars at 1800x real time take ~1 s of wall time; at max speed, far less."""
    cfg = sma_config(["BTCUSDT"])
    args = dict(
        symbols=["BTCUSDT"], start_ns=1704067200 * 10**9, end_ns=(1704067200 + 1800) * 10**9
    )
    t0 = time.perf_counter()
    paced = run_flow(cfg, FileSource(BARS_2024_01, speed=1800, **args), kind="bars")
    paced_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    fast = run_flow(cfg, FileSource(BARS_2024_01, **args), kind="bars")
    fast_s = time.perf_counter() - t0
    assert canonical(paced) == canonical(fast)  # pacing changes timing only
    assert paced_s >= 0.9
    assert fast_s < paced_s

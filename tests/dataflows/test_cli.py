"""The `cryptoflow` command as users run it: help on every verb, clear errors on bad input, and
byte-identical backtest outputs on rerun (separate processes, embedded ClickHouse)."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dataflows.cli import main, parser
from dataflows.io.files import FileSource
from tests.dataflows.flowkit import canonical, run_flow, sma_config, streams
from tests.paths import BARS_2024_01, ROOT

VERBS = [
    [],
    ["models"],
    ["models", "list"],
    ["models", "show"],
    ["models", "promote"],
    ["models", "diff"],
    ["models", "retrain"],
    ["infra"],
    ["ingest"],
    ["ingest", "file"],
    ["backtest"],
    ["paper"],
    ["offline"],
    ["offline", "dataset"],
    ["offline", "lookahead-check"],
    ["offline", "train"],
    ["data"],
    ["data", "list"],
    ["runs"],
    ["runs", "list"],
    ["runs", "show"],
    ["demo"],
    ["control"],
    ["report"],
    ["compare"],
    ["sweep"],
    ["stress"],
]


def _subparser(verb: list[str]) -> argparse.ArgumentParser:
    p = parser()
    for name in verb:
        sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
        p = sub.choices[name]
    return p


def test_every_verb_is_covered() -> None:
    """VERBS lists every command the parser has (a new verb gets its help tested)."""

    def walk(p: argparse.ArgumentParser, path: list[str]) -> list[list[str]]:
        out = [path]
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, child in a.choices.items():
                    out += walk(child, [*path, name])
        return out

    assert sorted(walk(parser(), [])) == sorted(VERBS)


@pytest.mark.parametrize("verb", VERBS, ids=lambda v: " ".join(v) or "cryptoflow")
def test_every_verb_has_help_with_defaults_and_an_example(
    verb: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parser().parse_args([*verb, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage: cryptoflow" in out
    example = out.split("\nexample:\n", 1)
    assert len(example) == 2 and example[1].strip().startswith("cryptoflow "), out
    # every option with a default says it, in its own help entry
    body = out[out.index("\noptions:\n") : out.index("\nexample:\n")]
    entries = re.split(r"\n(?=  -)", body)
    for a in _subparser(verb)._actions:
        if not a.option_strings or a.default in (None, False, argparse.SUPPRESS):
            continue
        entry = next(e for e in entries if e.split()[0].rstrip(",") == a.option_strings[0])
        assert "default" in entry, entry


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"cryptoflow {version('cryptoflow')}"


@pytest.fixture(autouse=True)
def _session_clickhouse(ch_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process calls must use the session's chDB path (one path per process)."""
    monkeypatch.setenv("CLICKHOUSE_DSN", ch_dsn)


def test_infra_down_says_when_it_stopped_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A broker started under another data dir keeps running: `down` must not claim it."""
    monkeypatch.setenv("CRYPTOFLOW_DATA_DIR", str(tmp_path))
    assert main(["infra", "down"]) == 0
    said = " ".join((lambda c: c.out + c.err)(capsys.readouterr()).split())
    assert f"no broker of ours was running under {tmp_path}" in said
    assert "kafka down" not in said


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
    for a, b in zip(streams(paced), streams(fast), strict=True):
        assert canonical(a) == canonical(b)  # pacing changes timing only
    assert paced_s >= 0.9
    assert fast_s < paced_s


def _run_id(out: str) -> str:
    found = re.findall(r"run_id (bt-[0-9a-f]{16})", out)
    assert len(found) == 1, out
    return found[0]


def test_set_overrides_config_and_the_run_id_follows(
    ch_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two --set values give two run ids (and results), the same value the same run id; the
    runs table then lists and shows each, with its effective config."""
    base = ["backtest", "--source", f"file:{BARS_2024_01}", "--symbols", "ETHUSDT"]
    base += ["--start", "2024-01-03", "--end", "2024-01-06", "--no-progress"]
    base += ["--config", "examples/sma_cross.toml", "--set", f"clickhouse.database={ch_db}"]
    ids = []
    for fast in ("5", "20", "20"):
        assert main([*base, "--set", f"strategy.fast={fast}"]) == 0, capsys.readouterr().err
        ids.append(_run_id(capsys.readouterr().out))
    assert ids[0] != ids[1] and ids[1] == ids[2]

    db = ["--set", f"clickhouse.database={ch_db}"]
    assert main(["runs", "list", *db]) == 0
    out = capsys.readouterr().out
    assert "2 runs" in out
    rows = [ln for ln in out.splitlines() if "bt-" in ln]
    # ids unbroken on one line each (stdout is no terminal: tables are not squeezed to 80)
    assert sorted(r.split()[1] for r in rows) == sorted(set(ids))
    assert all("backtest" in r and "2024-01-03 00:00 → 2024-01-06 00:00" in r for r in rows)

    assert main(["runs", "show", ids[1], *db]) == 0
    out = capsys.readouterr().out
    assert f"run {ids[1]}" in out and "ETHUSDT" in out and "total_return" in out
    assert '"fast": 20' in out  # the effective config, after --set
    assert main(["runs", "show", ids[0], *db]) == 0
    assert '"fast": 5' in capsys.readouterr().out


def test_runs_list_on_an_empty_store(ch_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "list", "--set", f"clickhouse.database={ch_db}"]) == 0
    assert "no runs stored yet" in capsys.readouterr().out


def test_data_list_of_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "list", "--source", f"file:{BARS_2024_01}"]) == 0
    out = capsys.readouterr().out
    for sym in ("BTCUSDT", "ETHUSDT"):
        row = next(ln for ln in out.splitlines() if sym in ln)
        assert "2024-01-01 00:00:00" in row and "2024-01-31 23:59:00" in row
        assert "44,640" in row and "60 s" in row
    assert max(len(ln) for ln in out.splitlines()) > 80  # not squeezed into 80 columns


def test_kafka_runs_print_no_library_lines(
    kafka_bootstrap: str, kafka_topic: Any, tmp_path: Path
) -> None:
    """ingest, backtest and data list against a real topic: their stdout/stderr hold our lines
    only (librdkafka's own log goes to the log file / Python logging)."""
    topic = kafka_topic(partitions=2, suffix="md.bars.v1")
    env = {**os.environ, "KAFKA_BOOTSTRAP": kafka_bootstrap, "CRYPTOFLOW_DATA_DIR": str(tmp_path)}
    env.pop("CLICKHOUSE_DSN", None)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dataflows.cli", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        )

    days = ["--start", "2024-01-01", "--end", "2024-01-03"]
    runs = [
        cli("ingest", "file", str(BARS_2024_01), "--topic", topic, *days),
        cli("backtest", "--source", f"kafka:{topic}", *days, "--no-progress", "--no-publish"),
        cli("data", "list", "--source", f"kafka:{topic}"),
    ]
    assert "delivered 5760 messages" in runs[0].stdout
    assert "final equity" in runs[1].stdout
    assert "2,880" in runs[2].stdout
    for proc in runs:
        for line in (proc.stdout + proc.stderr).splitlines():
            assert not line.startswith("%"), line
            assert "rdkafka" not in line and "FAIL|" not in line, line

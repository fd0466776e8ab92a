"""Every CLI error a person can act on: one line naming the flag or config field and what to
do, and the exit code (2: input, 3: a component fault). Real files, a real broker, no mocks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import polars as pl
import pytest

from dataflows.cli import main
from tests.paths import BARS_2024_01, ROOT

EXAMPLE = ROOT / "examples" / "sma_cross.toml"
FORMATS = "use YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS] (optionally +HH:MM)"


@pytest.fixture(autouse=True)
def _session_clickhouse(ch_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLICKHOUSE_DSN", ch_dsn)


def _err(capsys: pytest.CaptureFixture[str]) -> str:
    """The one line the command printed on stderr."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "dataflows.cli", *args],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _no_library_noise(proc: subprocess.CompletedProcess[str]) -> None:
    for line in (proc.stdout + proc.stderr).splitlines():
        assert not line.startswith("%"), line
        assert "rdkafka" not in line and "FAIL|" not in line, line


# --- dates ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "flag", "value"),
    [
        (
            ["backtest", "--source", f"file:{BARS_2024_01}", "--start", "2024-13-01"],
            "start",
            "2024-13-01",
        ),
        (
            ["backtest", "--source", f"file:{BARS_2024_01}", "--end", "yesterday"],
            "end",
            "yesterday",
        ),
        (
            ["ingest", "file", str(BARS_2024_01), "--start", "2024-01-01T25:00"],
            "start",
            "2024-01-01T25:00",
        ),
        (
            [
                "offline",
                "dataset",
                "--source",
                f"file:{BARS_2024_01}",
                "--out",
                "x.parquet",
                "--end",
                "1/2/2024",
            ],
            "end",
            "1/2/2024",
        ),
        (["paper", "--source", "kafka:md.bars.v1", "--start", "soon"], "start", "soon"),
    ],
    ids=["backtest-start", "backtest-end", "ingest", "dataset", "paper"],
)
def test_a_bad_date_names_the_flag_and_the_formats(
    argv: list[str], flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert _err(capsys) == (f"error: --{flag}: cannot read '{value}' as a UTC date/time; {FORMATS}")


def test_an_empty_range_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["backtest", "--source", f"file:{BARS_2024_01}", "--start", "2024-02-01"]
    assert main([*argv, "--end", "2024-01-01"]) == 2
    msg = (
        "error: --end (2024-01-01 00:00:00 UTC) must be after --start (2024-02-01 00:00:00 "
        "UTC): the range [start, end) is empty"
    )
    assert _err(capsys) == msg
    ingest = ["ingest", "file", str(BARS_2024_01), "--start", "2024-02-01", "--end", "2024-01-01"]
    assert main(ingest) == 2  # before reading the file or asking a broker
    assert _err(capsys) == msg


# --- symbols ----------------------------------------------------------------------------------


def test_an_unknown_symbol_lists_the_universe_and_the_file(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["backtest", "--source", f"file:{BARS_2024_01}", "--config", "examples/sma_cross.toml"]
    assert main([*argv, "--symbols", "btcusdt,SOLUSDT"]) == 2
    assert _err(capsys) == (
        "error: --symbols: SOLUSDT is not in the config's universe (BTCUSDT, ETHUSDT); add it "
        "to `symbols = [...]` in examples/sma_cross.toml, or use --set 'symbols=[...]'"
    )
    # without a config file: where to put one; paper and dataset check before running too
    assert main(["paper", "--source", "kafka:md.bars.v1", "--symbols", "SOLUSDT,XRPUSDT"]) == 2
    assert _err(capsys) == (
        "error: --symbols: SOLUSDT, XRPUSDT are not in the config's universe (BTCUSDT, "
        "ETHUSDT); add them to `symbols = [...]` in a config file (--config FILE), or use "
        "--set 'symbols=[...]'"
    )
    d = ["offline", "dataset", "--source", f"file:{BARS_2024_01}", "--out", "x.parquet"]
    assert main([*d, "--symbols", "SOLUSDT"]) == 2
    assert "SOLUSDT is not in the config's universe" in _err(capsys)


def test_set_symbols_extends_the_universe(
    tmp_path: Path, ch_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The fix the message names works: --set symbols=[...] admits the symbol."""
    argv = ["backtest", "--source", f"file:{BARS_2024_01}", "--symbols", "ETHUSDT"]
    argv += ["--start", "2024-01-03", "--end", "2024-01-04", "--no-progress"]
    rc = main([*argv, "--set", 'symbols=["ETHUSDT"]', "--set", f"clickhouse.database={ch_db}"])
    assert rc == 0, capsys.readouterr().err
    assert "final equity" in capsys.readouterr().out


# --- config -----------------------------------------------------------------------------------


def _config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "x.toml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[strategy]\nfsat = 3\n", "unknown key `fsat` in [strategy] of {f}; did you mean `fast`?"),
        (
            "[strategy]\nfee_bps = 3\n",
            "unknown key `fee_bps` in [strategy] of {f}; `fee_bps` belongs in [execution]",
        ),
        (
            "[stratgy]\nfast = 3\n",
            "unknown key `stratgy` in the top level of {f}; did you mean `strategy`?",
        ),
        (
            "[sizing]\nfraction = 1.5\n",
            "sizing.fraction = 1.5 in {f}: Input should be less than or equal to 1",
        ),
        (
            '[strategy]\nprice = "mid"\n',
            "strategy.price = 'mid' in {f}: Input should be 'close', 'open', 'high' or 'low'",
        ),
        (
            "[strategy]\nfast = 50\nslow = 10\n",
            "[strategy] of {f}: strategy.fast (50) must be < strategy.slow (10)",
        ),
        ("[strategy\nfast = 3\n", "{f} is not valid TOML: "),
    ],
    ids=["typo", "wrong-section", "section-typo", "range", "choice", "rule", "syntax"],
)
def test_a_bad_config_names_the_file_the_key_and_the_fix(
    tmp_path: Path, text: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    f = _config(tmp_path, text)
    assert main(["backtest", "--source", f"file:{BARS_2024_01}", "--config", f]) == 2
    assert _err(capsys).startswith("error: " + expected.format(f=f))


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (
            "strategy.fsat=3",
            "--set strategy.fsat=3: unknown key `fsat` in [strategy]; did you mean `fast`?",
        ),
        (
            "sizing.fraction=2",
            "--set sizing.fraction=2: Input should be less than or equal to 1 "
            "(portfolio.max_leverage of a spot account)",
        ),
        (
            "strategy.fast=60",
            "--set strategy.fast=60: strategy.fast (60) must be < strategy.slow (50)",
        ),
        (
            "strategy.fast=ten",
            "--set strategy.fast=ten: Input should be a valid integer, unable to parse string "
            "as an integer",
        ),
        (
            "fast",
            "--set 'fast': want section.key=value, e.g. --set strategy.fast=20 "
            '(the value is TOML: 1e3, true, "x", [1, 2])',
        ),
        (
            "strategy.fast.x=1",
            "--set strategy.fast.x=1: `strategy.fast` is a value, not a section; "
            "use --set strategy.fast=VALUE",
        ),
    ],
)
def test_a_bad_set_names_the_set(
    item: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["backtest", "--source", f"file:{BARS_2024_01}", "--set", item]) == 2
    assert _err(capsys) == f"error: {expected}"


# --- files ------------------------------------------------------------------------------------


def test_a_file_missing_a_column_names_it_and_the_columns_it_has(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bars = pl.read_parquet(BARS_2024_01).head(100)
    no_volume = tmp_path / "no_volume.csv"
    bars.drop("volume").write_csv(no_volume)
    has = ", ".join(c for c in bars.columns if c != "volume")
    assert main(["backtest", "--source", f"file:{no_volume}"]) == 2
    assert _err(capsys) == (
        f"error: not a bar or trade file: a bars file needs column volume, which it lacks; it "
        f"has: {has} (all bars columns: symbol, open_time, open, high, low, close, volume)"
    )
    no_symbol = tmp_path / "no_symbol.parquet"
    bars.drop("symbol").write_parquet(no_symbol)
    assert main(["ingest", "file", str(no_symbol), "--no-progress"]) == 2
    line = _err(capsys)
    assert line.startswith(f"error: {no_symbol} has no symbol column and its name does not say")
    assert "open_time" in line and "name the file after its symbol (BTCUSDT-1m.csv" in line
    assert main(["backtest", "--source", f"file:{tmp_path}/nothing.parquet"]) == 2
    assert "no such file" in _err(capsys)


# --- usage ------------------------------------------------------------------------------------


def test_usage_errors_are_one_line_with_where_to_read_more() -> None:
    proc = _cli("backtest")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "cryptoflow backtest: error: the following arguments are required: --source "
        "(see `cryptoflow backtest --help`)"
    )
    proc = _cli("backtest", "--source", "kafka:x", "--workers", "two")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "cryptoflow backtest: error: argument --workers: invalid int value: 'two' "
        "(see `cryptoflow backtest --help`)"
    )
    proc = _cli("paper", "--source", "file:x.parquet")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: --source: paper trading tails a Kafka topic, not 'file:x.parquet'; use "
        "--source kafka:<topic>, e.g. kafka:md.trades.v1"
    )


def test_an_unknown_run_id_says_how_to_list_runs(
    ch_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["runs", "show", "bt-nope", "--set", f"clickhouse.database={ch_db}"]) == 2
    line = _err(capsys)
    assert line.startswith(f"error: no run 'bt-nope' in {ch_db} at ")
    assert line.endswith("; `cryptoflow runs list` shows the stored runs")


# --- Kafka ------------------------------------------------------------------------------------


def test_a_broker_that_does_not_answer_is_one_line_within_seconds(tmp_path: Path) -> None:
    env = {"KAFKA_BOOTSTRAP": "127.0.0.1:1", "CRYPTOFLOW_DATA_DIR": str(tmp_path)}
    for argv in (
        ["backtest", "--source", "kafka:md.bars.v1", "--no-progress"],
        ["data", "list"],
        ["ingest", "file", str(BARS_2024_01), "--no-progress"],
    ):
        t0 = time.monotonic()
        proc = _cli(*argv, env=env)
        took = time.monotonic() - t0
        assert proc.returncode == 3, proc.stderr
        assert took < 20, took  # ~5 s lookup timeout, plus interpreter start
        line = proc.stderr.strip()
        assert len(line.splitlines()) == 1, line
        assert line.startswith("error: kafka: broker 127.0.0.1:1 not answering ("), line
        assert "while looking up topic md.bars.v1; check that the broker is running" in line
        assert "or start one with cryptoflow infra up (details: " in line
        _no_library_noise(proc)


def test_a_missing_topic_names_the_flag_and_infra_up(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = {"KAFKA_BOOTSTRAP": kafka_bootstrap, "CRYPTOFLOW_DATA_DIR": str(tmp_path)}
    topic = f"test.{uuid.uuid4().hex[:8]}.md.bars.v1"  # never created
    for argv, flag in (
        (["backtest", "--source", f"kafka:{topic}", "--no-progress"], "the --source topic name"),
        (["data", "list", "--source", f"kafka:{topic}"], "the --source topic name"),
        (["ingest", "file", str(BARS_2024_01), "--topic", topic], "the --topic name"),
    ):
        t0 = time.monotonic()
        proc = _cli(*argv, env=env)
        assert time.monotonic() - t0 < 20
        assert proc.returncode == 3, proc.stderr
        line = proc.stderr.strip()
        assert line.startswith(
            f"error: kafka: topic {topic} does not exist on {kafka_bootstrap}; check {flag} "
            "(cryptoflow infra up creates the project topics: md.trades.v1, md.bars.v1, "
            "orders.v1, fills.v1, dlq.v1, risk.denials.v1, risk.state.v1, control.commands.v1) "
            "(details: "
        ), line
        _no_library_noise(proc)


def test_ctrl_c_during_a_backtest_is_one_line_and_exit_130(tmp_path: Path) -> None:
    """Bytewax turns a SIGINT inside run_main into a Rust panic and its own error: the user sees
    one line and 130, and no run is recorded."""
    import signal

    year = ROOT.parent / "shared" / "data" / "bars_1m" / "binance_spot_btcusdt_1m_2024.parquet"
    if not year.is_file():
        pytest.skip("needs ../shared/data")
    env = {**os.environ, "CRYPTOFLOW_DATA_DIR": str(tmp_path)}
    env.pop("CLICKHOUSE_DSN", None)
    cmd = [sys.executable, "-m", "dataflows.cli", "backtest", "--source", f"file:{year}",
           "--symbols", "BTCUSDT", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(6)  # inside the replay
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    lines = [ln for ln in err.decode().splitlines() if ln.strip()]
    assert proc.returncode == 130, err.decode()
    assert len(lines) == 1 and lines[0].startswith("interrupted: backtest stopped"), lines
    assert b"panicked" not in out + err

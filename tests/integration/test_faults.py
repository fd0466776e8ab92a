"""Faults end, they never hang: the `cryptoflow` command against real components that fail.

Each fault (Kafka broker gone while replaying, with and without publishing; ClickHouse server
unreachable; data dir read-only; disk full) must end the run with exit code 3 within a bounded
time and ONE line on stderr naming the component and what to check — no Rust panic text, no
traceback (those go to the details log, or to the terminal with `--debug`). A broker that is
back within `[kafka] outage_s` loses nothing: the run's results equal an uninterrupted run's.

Broker faults use a broker of their own (never the session broker of tests/conftest.py), on a
free even port (its controller listens on port + 1). Disk faults mount a tmpfs (root only).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.paths import BARS_2024_01, ROOT, SHARED

EXAMPLE_CONFIG = ROOT / "examples" / "sma_cross.toml"
OUTAGE_S = 5.0


def _config(tmp_path: Path, *, outage_s: float = OUTAGE_S, retries: int = 2) -> Path:
    """examples/sma_cross.toml with short fault settings (quick tests)."""
    path = tmp_path / f"faults-{uuid.uuid4().hex[:6]}.toml"
    path.write_text(
        EXAMPLE_CONFIG.read_text()
        + f"\n[kafka]\noutage_s = {outage_s}\n\n[clickhouse]\nretries = {retries}\n"
        "retry_backoff_s = 0.1\n"
    )
    return path


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "CRYPTOFLOW_DATA_DIR": str(data_dir), **extra}
    if "CLICKHOUSE_DSN" not in extra:
        env.pop("CLICKHOUSE_DSN", None)
    return env


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "dataflows.cli", *args]


def _file_backtest(cfg: Path, *extra: str) -> list[str]:
    return _cli(
        "backtest", "--source", f"file:{BARS_2024_01}", "--config", str(cfg), "--no-progress",
        *extra,
    )  # fmt: skip


def _run(cmd: list[str], env: dict[str, str], timeout_s: float) -> tuple[int, str, str, float]:
    t0 = time.monotonic()
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    return proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0


def _assert_one_line(rc: int, out: str, err: str, component: str) -> str:
    """Exit 3 and exactly one line on stderr, `error: <component>: ...; check ...`."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 3, (rc, out[-2000:], err[-4000:])
    assert len(lines) == 1, err[-4000:]
    line = lines[0]
    assert line.startswith(f"error: {component}: "), line
    assert "; check " in line, line
    for text in (out, err):
        assert "panicked" not in text and "Traceback" not in text and "RUST_BACKTRACE" not in text
    return line


def _details(line: str) -> Path:
    m = re.search(r"\(details: (.+)\)$", line)
    assert m, line
    return Path(m.group(1))


# --------------------------------------------------------------------------- ClickHouse


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_clickhouse_server_is_one_line(tmp_path: Path) -> None:
    dsn = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    rc, out, err, took = _run(
        _file_backtest(_config(tmp_path)), _env(tmp_path / "d", CLICKHOUSE_DSN=dsn), 120
    )
    line = _assert_one_line(rc, out, err, "clickhouse")
    assert f"cannot connect to {dsn}" in line and "connection refused" in line
    assert "CLICKHOUSE_DSN" in line
    assert took < 30, took  # 2 retries at 0.1 s, 0.2 s: bounded by the config, not a hang
    log = _details(line).read_text()
    assert "Traceback" in log  # the full story is kept for whoever debugs it


def test_debug_flag_shows_the_traceback(tmp_path: Path) -> None:
    dsn = f"http://127.0.0.1:{_free_port()}"
    cmd = _cli("--debug", *_file_backtest(_config(tmp_path))[3:])
    rc, _, err, _ = _run(cmd, _env(tmp_path / "d", CLICKHOUSE_DSN=dsn), 120)
    assert rc == 3
    assert "Traceback" in err and "ConnectionRefusedError" in err
    assert err.strip().splitlines()[-1].startswith("error: clickhouse: cannot connect to")
    # --debug after the verb works too
    rc2, _, err2, _ = _run([*_file_backtest(_config(tmp_path)), "--debug"], _env(
        tmp_path / "d", CLICKHOUSE_DSN=dsn), 120)  # fmt: skip
    assert rc2 == 3 and "Traceback" in err2


@contextlib.contextmanager
def _tmpfs(path: Path, *options: str) -> Iterator[Path]:
    """A tmpfs mounted at `path` (unmounted afterwards); skips where mounting is not allowed."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root (disk-fault tests)")
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_read_only_data_dir_is_one_line(tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "ro", "ro", "size=1m") as data:
        rc, out, err, took = _run(_file_backtest(_config(tmp_path)), _env(data), 120)
    line = _assert_one_line(rc, out, err, "clickhouse")
    assert f"{data}/clickhouse is not writable (read-only file system)" in line
    assert f"check that {data} is writable" in line
    assert took < 30, took
    assert _details(line).exists()  # the data dir is read-only: the log went to the temp dir


@pytest.mark.parametrize("when", ["during the run", "before the run"])
def test_full_disk_is_one_line(tmp_path: Path, when: str) -> None:
    with _tmpfs(tmp_path / "full", "size=8m" if when == "during the run" else "size=40m") as data:
        if when == "before the run":  # a store exists, then the disk fills up
            subprocess.run(
                [sys.executable, "-c", "from infra import clickhouse as ch; "
                 f"ch.ensure_tables(ch.connect('chdb://{data}/clickhouse'), 'cryptoflow')"],
                cwd=ROOT, check=True, capture_output=True, timeout=120,
            )  # fmt: skip
            with contextlib.suppress(OSError), (data / "filler").open("wb") as fh:
                while True:
                    fh.write(b"\0" * (1 << 20))
        rc, out, err, took = _run(_file_backtest(_config(tmp_path)), _env(data), 180)
        line = _assert_one_line(rc, out, err, "clickhouse")
        assert "disk full under" in line and f"free space under {data}/clickhouse" in line
        assert re.search(r"insert of \d+ rows into cryptoflow\.\w+", line), line
        assert "(3 attempts)" in line  # retries = 2
        assert took < 90, took


# --------------------------------------------------------------------------- Kafka


def _free_even_port() -> int:
    for _ in range(200):
        port = 24000 + 2 * int.from_bytes(os.urandom(2), "big") % 8000
        ok = True
        for p in (port, port + 1):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
        if ok:
            return port
    raise RuntimeError("no free port pair")


class Broker:
    def __init__(self, bootstrap: str, kdir: Path) -> None:
        self.bootstrap, self.dir = bootstrap, kdir

    def up(self) -> None:
        from infra.kafka import broker

        broker.up(self.bootstrap, self.dir, timeout_s=180)

    def down(self) -> None:
        from infra.kafka import broker

        broker.down(self.dir)


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A broker of this module's own with January 2024 bars (BTC, ETH) in md.bars.v1."""
    from infra.kafka import broker

    jars = (broker.kafka_home() / "lib" / ".complete").exists()
    if shutil.which("java") is None or (not jars and shutil.which("mvn") is None):
        pytest.skip("broker-fault tests need Java 17+ (and Maven once)")
    kdir = tmp_path_factory.mktemp("fault-broker")
    b = Broker(f"127.0.0.1:{_free_even_port()}", kdir)
    b.up()
    try:
        env = _env(kdir / "ingest", KAFKA_BOOTSTRAP=b.bootstrap)
        subprocess.run(
            _cli("ingest", "file", str(BARS_2024_01), "--no-progress"),
            cwd=ROOT, env=env, check=True, capture_output=True, timeout=300,
        )  # fmt: skip
        yield b
    finally:
        b.down()


def _start(cmd: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _kafka_backtest(cfg: Path, *extra: str) -> list[str]:
    return _cli(
        "backtest", "--source", "kafka:md.bars.v1", "--config", str(cfg), "--no-progress",
        *extra,
    )  # fmt: skip


def _down_mid_run(b: Broker, proc: subprocess.Popen[str], after_s: float) -> float:
    """Stop the broker `after_s` into the run; return when it is down (monotonic)."""
    time.sleep(after_s)
    assert proc.poll() is None, "the replay ended before the broker went down: make it longer"
    b.down()
    return time.monotonic()


# Paced: January 2024 at 60000x real time is ~45 s of replay, so the broker dies mid-run.
PACED = ("--speed", "60000")


@pytest.mark.kafka
@pytest.mark.slow
def test_broker_down_while_publishing_ends_in_one_line(own_broker: Broker, tmp_path: Path):
    env = _env(tmp_path / "d", KAFKA_BOOTSTRAP=own_broker.bootstrap)
    proc = _start(_kafka_backtest(_config(tmp_path), *PACED, "--run-id", "down-pub"), env)
    try:
        down_at = _down_mid_run(own_broker, proc, 10)
        out, err = proc.communicate(timeout=OUTAGE_S + 30)
        took = time.monotonic() - down_at
    finally:
        if proc.poll() is None:
            proc.kill()
        own_broker.up()
    line = _assert_one_line(proc.returncode, out, err, "kafka")
    assert "KAFKA_BOOTSTRAP" in line and "cryptoflow infra status" in line
    assert took < OUTAGE_S + 30, took
    print(f"\nbroker down while publishing: exit {proc.returncode} {took:.1f} s after; {line}")


@pytest.mark.kafka
@pytest.mark.slow
def test_broker_down_at_start_without_publishing_ends_in_one_line(
    own_broker: Broker, tmp_path: Path
):
    env = _env(tmp_path / "d", KAFKA_BOOTSTRAP=own_broker.bootstrap)
    own_broker.down()
    try:
        rc, out, err, took = _run(
            _kafka_backtest(_config(tmp_path), "--no-publish"), env, OUTAGE_S + 60
        )
    finally:
        own_broker.up()
    line = _assert_one_line(rc, out, err, "kafka")
    assert own_broker.bootstrap in line and "KAFKA_BOOTSTRAP" in line
    assert took < OUTAGE_S + 30, took
    print(f"\nbroker down at start (--no-publish): exit {rc} after {took:.1f} s; {line}")


# Years of bars, beyond what the consumer prefetches (64 MiB per partition), so the replay
# still needs the broker when it goes away.
# The source scans the whole topic before it emits (it sorts by event time), and only that scan
# reads the broker: BTC and ETH 2021-2023 (3.2M records) keep it busy ~25 s here, so a broker
# stopped 8 s in dies mid-scan on a machine twice as fast or a loaded one slow to start.
YEARS = [
    SHARED / "bars_1m" / f"binance_spot_{s}_1m_{y}.parquet"
    for s in ("btcusdt", "ethusdt")
    for y in (2021, 2022, 2023)
]


@pytest.mark.kafka
@pytest.mark.slow
def test_broker_down_mid_replay_without_publishing_ends_in_one_line(tmp_path: Path):
    """The consumer-side fault (dataflows/io/kafka.py KafkaRangeSource): reads stall for
    outage_s, then one line."""
    if not all(p.exists() for p in YEARS):
        pytest.skip(f"needs {YEARS[0].parent} (the full bar history)")
    from infra.kafka import broker

    if shutil.which("java") is None or not (broker.kafka_home() / "lib" / ".complete").exists():
        pytest.skip("needs Java and the cached Kafka jars")
    b = Broker(f"127.0.0.1:{_free_even_port()}", tmp_path / "kafka")
    b.up()
    try:
        env = _env(tmp_path / "d", KAFKA_BOOTSTRAP=b.bootstrap)
        for path in YEARS:
            subprocess.run(
                _cli("ingest", "file", str(path), "--no-progress"),
                cwd=ROOT, env=env, check=True, capture_output=True, timeout=300,
            )  # fmt: skip
        cmd = _kafka_backtest(_config(tmp_path), "--no-publish", "--symbols", "BTCUSDT")
        # Unpaced: should the scan end before the broker goes down, the run ends with exit 0
        # well inside the timeout and the asserts below say so.
        proc = _start(cmd, env)
        try:
            down_at = _down_mid_run(b, proc, 8)
            out, err = proc.communicate(timeout=OUTAGE_S + 60)
            took = time.monotonic() - down_at
        finally:
            if proc.poll() is None:
                proc.kill()
    finally:
        b.down()
    line = _assert_one_line(proc.returncode, out, err, "kafka")
    assert "KAFKA_BOOTSTRAP" in line
    assert "while reading md.bars.v1" in line, f"not the reader's fault (mid-scan): {line}"
    assert took < OUTAGE_S + 30, took
    print(f"\nbroker down mid-replay (--no-publish): exit {proc.returncode} {took:.1f} s after")


@pytest.mark.kafka
@pytest.mark.slow
def test_broker_back_within_outage_loses_nothing(own_broker: Broker, tmp_path: Path):
    from confluent_kafka import Consumer, TopicPartition

    # Generous outage: stopping and restarting a broker takes ~10-20 s on a small machine.
    cfg = _config(tmp_path, outage_s=120)
    env_ref = _env(tmp_path / "ref", KAFKA_BOOTSTRAP=own_broker.bootstrap)
    ref = subprocess.run(
        _kafka_backtest(cfg, "--out", str(tmp_path / "ref-out"), "--run-id", "ref"),
        cwd=ROOT, env=env_ref, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert ref.returncode == 0, ref.stderr[-3000:]

    run_id = f"blip-{uuid.uuid4().hex[:8]}"
    env = _env(tmp_path / "blip", KAFKA_BOOTSTRAP=own_broker.bootstrap)
    out_dir = tmp_path / "blip-out"
    proc = _start(_kafka_backtest(cfg, *PACED, "--out", str(out_dir), "--run-id", run_id), env)
    try:
        _down_mid_run(own_broker, proc, 10)
        own_broker.up()
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    for name in ("fills.csv", "equity.csv"):
        assert (out_dir / name).read_bytes() == (tmp_path / "ref-out" / name).read_bytes(), name

    # Every fill reached Kafka exactly once (idempotent producer retried across the outage).
    n_fills = len((out_dir / "fills.csv").read_text().splitlines()) - 1
    consumer = Consumer(
        {
            "bootstrap.servers": own_broker.bootstrap,
            "group.id": "faults",
            "enable.partition.eof": True,
        }
    )
    parts = consumer.list_topics("fills.v1", timeout=10).topics["fills.v1"].partitions
    consumer.assign([TopicPartition("fills.v1", p, 0) for p in parts])
    seen, eof = 0, set()
    deadline = time.monotonic() + 60
    while len(eof) < len(parts) and time.monotonic() < deadline:
        for m in consumer.consume(10_000, 0.5):
            if m.error() is not None:
                eof.add(m.partition())
            elif dict(m.headers() or []).get("run_id") == run_id.encode():
                seen += 1
    consumer.close()
    assert seen == n_fills, (seen, n_fills)

"""Paper trading survives restarts: SIGINT/SIGTERM stop cleanly, the same --run-id resumes with
the same state, and the stitched run's orders and fills equal one uninterrupted run exactly, with
no order published twice. Real broker, real bars, the real CLI in subprocesses."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from infra.kafka.client import CheckedProducer
from schemas.codec import encode
from tests.operators.opdata import real_bars
from tests.paths import ROOT

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

N = 3000  # bars per symbol; 2,000 of them fed live over ~8 s
SYMBOLS = ("BTCUSDT", "ETHUSDT")
CLOSE_RE = re.compile(r"last close (\d{4}-\d\d-\d\d \d\d:\d\d) UTC")


def _bars(lo: int, hi: int):
    return [b for i in range(lo, hi) for b in (real_bars(s)[i] for s in SYMBOLS)]


def _produce(bootstrap: str, topic: str, bars) -> None:
    with CheckedProducer(bootstrap) as p:
        for b in bars:
            p.produce(topic, encode(b), b.symbol, b.ts_event // 10**6)


def _close_str(i: int) -> str:
    b = real_bars(SYMBOLS[0])[i]
    return datetime.fromtimestamp((b.ts_event + b.interval_ns) / 1e9, UTC).strftime(
        "%Y-%m-%d %H:%M"
    )


_RUNNING: list[Paper] = []


@pytest.fixture(autouse=True)
def _no_leftover_processes():
    yield
    while _RUNNING:
        p = _RUNNING.pop().proc
        if p.poll() is None:
            p.kill()
            p.wait()


class Paper:
    """One `cryptoflow paper` process; its stdout is read on a thread."""

    def __init__(self, topic: str, run_id: str, env: dict[str, str], config: Path) -> None:
        _RUNNING.append(self)
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dataflows.cli",
                "paper",
                "--source",
                f"kafka:{topic}",
                "--config",
                str(config),
                "--start",
                "2024-01-01",
                "--run-id",
                run_id,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def last_close(self) -> str | None:
        for line in reversed(self.lines):
            m = CLOSE_RE.search(line)
            if m:
                return m.group(1)
        return None

    def wait_close(self, at_least: str, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = self.last_close()
            if got is not None and got >= at_least:
                return
            assert self.proc.poll() is None, "\n".join(self.lines)
            time.sleep(0.05)
        raise AssertionError(f"no bar closing at {at_least} within {timeout_s}s:\n" + self.out())

    def wait_line(self, text: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(text in line for line in self.lines):
            assert time.monotonic() < deadline, f"no {text!r} within {timeout_s}s:\n" + self.out()
            assert self.proc.poll() is None, self.out()
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGINT) -> str:
        time.sleep(0.5)  # let the other symbol's last bars through too
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("paper did not stop within 60 s:\n" + self.out()) from None
        time.sleep(0.2)  # the reader thread drains the pipe
        assert rc == (-sig if sig == signal.SIGKILL else 0), self.out()
        return self.out()

    def out(self) -> str:
        return "\n".join(self.lines)


def _published(bootstrap: str, topic: str, run_id: str) -> list[dict]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), 10)[1] for p in parts}
        c.assign([TopicPartition(topic, p, 0) for p in parts])
        got: list[dict] = []
        done = {p for p, e in ends.items() if e == 0}
        deadline = time.monotonic() + 30
        while len(done) < len(ends) and time.monotonic() < deadline:
            for m in c.consume(10_000, 0.5):
                if m.error() is not None:
                    continue
                if m.offset() >= ends[m.partition()] - 1:
                    done.add(m.partition())
                if dict(m.headers() or []).get("run_id") == run_id.encode():
                    got.append(json.loads(m.value()))
        return got
    finally:
        c.close()


def _config(tmp_path: Path) -> Path:
    cfg = tmp_path / "paper.toml"
    base = (ROOT / "examples" / "sma_cross.toml").read_text()
    cfg.write_text(base + "\n[paper]\nepoch_s = 0.3\nheartbeat_s = 0.2\n")
    return cfg


@pytest.mark.parametrize(
    ("seed", "second_stop"),
    [(7, signal.SIGTERM), (11, signal.SIGKILL)],
    ids=["clean-stops", "crash"],
)
def test_stop_and_resume_equals_one_uninterrupted_run(
    kafka_topic, kafka_bootstrap: str, tmp_path: Path, seed: int, second_stop: int
):
    """SIGKILL is a crash: the epoch in progress is replayed on resume, and what it had
    already published is recognised and not published again."""
    rng = random.Random(seed)
    env = {**os.environ, "KAFKA_BOOTSTRAP": kafka_bootstrap, "CRYPTOFLOW_DATA_DIR": str(tmp_path)}
    env.pop("CLICKHOUSE_DSN", None)
    config = _config(tmp_path)

    # One uninterrupted run over all bars.
    whole = kafka_topic(partitions=2, suffix="md.bars.v1")
    _produce(kafka_bootstrap, whole, _bars(0, N))
    ref_id = f"paper-ref-{uuid.uuid4().hex[:8]}"
    ref = Paper(whole, ref_id, env, config)
    ref.wait_close(_close_str(N - 1))
    ref.stop()

    # The same bars, stitched from sessions stopped at random times: the first thousand bars
    # are history when the first session starts, the rest arrive live while sessions come and go
    # (bars published while no session runs wait in Kafka).
    topic = kafka_topic(partitions=2, suffix="md.bars.v1")
    _produce(kafka_bootstrap, topic, _bars(0, 1000))
    run_id = f"paper-st-{uuid.uuid4().hex[:8]}"

    def feed() -> None:
        for lo in range(1000, N, 25):
            _produce(kafka_bootstrap, topic, _bars(lo, min(lo + 25, N)))
            time.sleep(0.1)

    feeder = threading.Thread(target=feed, daemon=True)
    s1 = Paper(topic, run_id, env, config)
    s1.wait_line("paper " + run_id + " |")
    feeder.start()
    time.sleep(rng.uniform(0.2, 2.5))
    out1 = s1.stop(signal.SIGINT)
    assert "stopped; resume it with --run-id" in out1 and "panicked" not in out1

    s2 = Paper(topic, run_id, env, config)
    s2.wait_line("paper " + run_id + " |")
    assert "resuming" in s2.out()
    time.sleep(rng.uniform(0.2, 2.0))
    out2 = s2.stop(second_stop)
    assert "panicked" not in out2
    assert feeder.is_alive(), "the feed ended before the last session: make it slower"

    s3 = Paper(topic, run_id, env, config)
    feeder.join()
    s3.wait_close(_close_str(N - 1))
    s3.stop()

    for name in ("orders.v1", "fills.v1"):
        want = _published(kafka_bootstrap, name, ref_id)
        got = _published(kafka_bootstrap, name, run_id)
        key = "order_id" if name == "orders.v1" else "fill_id"
        repeats = [k for k, n in Counter(m[key] for m in got).items() if n > 1]
        assert not repeats, f"{name}: published twice: {repeats[:5]}"
        assert len(want) > 40
        assert sorted(got, key=lambda m: m[key]) == sorted(want, key=lambda m: m[key])


def test_tailing_from_now_says_when_the_topic_holds_only_older_records(
    kafka_topic, kafka_bootstrap: str, tmp_path: Path
):
    env = {**os.environ, "KAFKA_BOOTSTRAP": kafka_bootstrap, "CRYPTOFLOW_DATA_DIR": str(tmp_path)}
    env.pop("CLICKHOUSE_DSN", None)
    topic = kafka_topic(partitions=2, suffix="md.bars.v1")
    _produce(kafka_bootstrap, topic, _bars(0, 50))
    p = subprocess.Popen(
        [sys.executable, "-m", "dataflows.cli", "paper", "--source", f"kafka:{topic}",
         "--config", str(_config(tmp_path)), "--run-id", f"paper-now-{uuid.uuid4().hex[:6]}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    paper = Paper.__new__(Paper)
    paper.proc, paper.lines = p, []
    _RUNNING.append(paper)
    threading.Thread(target=paper._read, daemon=True).start()
    paper.wait_line("waiting for bars")
    out = paper.stop()
    assert f"the newest record on {topic} is from 2024-01-01 00:49:00 UTC" in out
    assert "nothing to trade until newer records arrive (use --start" in out
    assert "trades (fills)" in out  # the closing summary, even of an empty session


def test_a_symbol_that_never_sends_does_not_hold_the_paper_account(
    kafka_topic, kafka_bootstrap: str, tmp_path: Path
):
    """Only BTCUSDT bars on the topic, the config trades BTCUSDT and ETHUSDT: after
    `paper.stale_after_s` ETHUSDT no longer holds the one account back."""
    env = {**os.environ, "KAFKA_BOOTSTRAP": kafka_bootstrap, "CRYPTOFLOW_DATA_DIR": str(tmp_path)}
    env.pop("CLICKHOUSE_DSN", None)
    topic = kafka_topic(partitions=2, suffix="md.bars.v1")
    _produce(kafka_bootstrap, topic, list(real_bars("BTCUSDT")[:600]))
    cfg = tmp_path / "stale.toml"
    cfg.write_text(_config(tmp_path).read_text().replace("[paper]", "[paper]\nstale_after_s = 1"))
    run_id = f"paper-stale-{uuid.uuid4().hex[:6]}"
    p = Paper(topic, run_id, env, cfg)
    deadline = time.monotonic() + 60
    orders = re.compile(r"\| orders ([1-9][0-9,]*) \|")
    while not any(orders.search(line) for line in p.lines):
        assert time.monotonic() < deadline, p.out()
        assert p.proc.poll() is None, p.out()
        time.sleep(0.1)
    out = p.stop()
    assert "panicked" not in out

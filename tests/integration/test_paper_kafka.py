"""Paper mode is the same flow tailing Kafka: bars published while it runs are traded as they
arrive, and its fills equal the independent reference."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import Consumer, TopicPartition

from infra.kafka.client import CheckedProducer
from schemas.codec import encode
from tests.operators.opdata import real_bars
from tests.paths import ROOT
from tests.reference.sma_cross_numpy import sma_cross_backtest

pytestmark = pytest.mark.kafka


def _fills_since(consumer: Consumer, run_id: str, seen: list[dict]) -> None:
    for m in consumer.consume(1000, timeout=0.5):
        if m.error() is None and dict(m.headers() or []).get("run_id") == run_id.encode():
            seen.append(json.loads(m.value()))


def test_paper_trades_bars_as_they_arrive(kafka_topic, kafka_bootstrap: str, tmp_path: Path):
    topic = kafka_topic(partitions=2, suffix="md.bars.v1")
    bars = list(real_bars("BTCUSDT")[:6000])
    ref = sma_cross_backtest(np.array([b.open for b in bars]), np.array([b.close for b in bars]))
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": "paper-test",
            "enable.auto.commit": False,
        }
    )
    parts = consumer.list_topics("fills.v1", timeout=10).topics["fills.v1"].partitions
    consumer.assign(
        [
            TopicPartition(
                "fills.v1", p, consumer.get_watermark_offsets(TopicPartition("fills.v1", p))[1]
            )
            for p in parts
        ]
    )
    with CheckedProducer(kafka_bootstrap) as p:  # history before the paper trader starts
        for b in bars[:3000]:
            p.produce(topic, encode(b), b.symbol, b.ts_event // 10**6)
    run_id = f"paper-test-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "KAFKA_BOOTSTRAP": kafka_bootstrap, "CRYPTOFLOW_DATA_DIR": str(tmp_path)}
    env.pop("CLICKHOUSE_DSN", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dataflows.cli",
            "paper",
            "--source",
            f"kafka:{topic}",
            "--symbols",
            "BTCUSDT",
            "--config",
            "examples/sma_cross.toml",
            "--start",
            "2024-01-01",
            "--run-id",
            run_id,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    seen: list[dict] = []
    try:
        deadline = time.monotonic() + 60
        while len(seen) < sum(ref["fill_bar"] < 3000) and time.monotonic() < deadline:
            _fills_since(consumer, run_id, seen)
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        with CheckedProducer(kafka_bootstrap) as p:  # live: new bars while it runs
            for b in bars[3000:]:
                p.produce(topic, encode(b), b.symbol, b.ts_event // 10**6)
        while len(seen) < len(ref["price"]) and time.monotonic() < deadline + 30:
            _fills_since(consumer, run_id, seen)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        consumer.close()
    seen.sort(key=lambda f: f["ts_event"])
    assert len(seen) == len(ref["price"]) > 20
    assert [f["price"] for f in seen] == ref["price"].tolist()
    assert [f["side"] for f in seen] == ["buy" if s == 1 else "sell" for s in ref["side"]]

"""Broker management against a real KRaft broker (see tests/conftest.py for which one)."""

from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path

import pytest

from infra.kafka import broker
from schemas.topics import TOPICS

pytestmark = pytest.mark.kafka

external = pytest.mark.skipif(
    bool(os.environ.get("KAFKA_BOOTSTRAP")), reason="broker is external ($KAFKA_BOOTSTRAP)"
)


def _meta(data_dir: Path) -> tuple[str, float]:
    meta = data_dir / "kafka" / "logs" / "meta.properties"
    text = meta.read_text()
    cluster = next(line for line in text.splitlines() if line.startswith("cluster.id="))
    return cluster, meta.stat().st_mtime


def _free_port_pair() -> int:
    # Needs port and port+1 (controller) free.
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with socket.socket() as s2:
            try:
                s2.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair")


def test_project_topics_exist_with_default_partitions(kafka_bootstrap: str) -> None:
    topics = broker.list_topics(kafka_bootstrap)
    for name, topic in TOPICS.items():
        assert topics.get(name, 0) >= topic.partitions, name


def test_status_reports_broker_and_topics(kafka_bootstrap: str, kafka_data_dir: Path) -> None:
    st = broker.status(kafka_bootstrap, kafka_data_dir)
    assert st["running"] is True
    assert set(TOPICS) <= set(st["topics"])
    assert st["kafka_version"] == broker.KAFKA_VERSION
    if not os.environ.get("KAFKA_BOOTSTRAP"):
        assert st["managed"] and isinstance(st["pid"], int)
        assert st["formatted"]


def test_up_partition_overrides_create_and_grow(kafka_bootstrap: str) -> None:
    name = f"test.{uuid.uuid4().hex[:8]}.md.bars.v1"
    try:
        broker.up(kafka_bootstrap, partitions={name: 3})
        assert broker.list_topics(kafka_bootstrap)[name] == 3
        # More partitions: grown. Fewer: left alone (Kafka cannot shrink).
        assert broker.ensure_topics(kafka_bootstrap, {name: 5}, include_defaults=False) == {name: 5}
        assert broker.ensure_topics(kafka_bootstrap, {name: 2}, include_defaults=False) == {name: 5}
        assert broker.status(kafka_bootstrap)["topics"][name] == 5
    finally:
        broker.delete_topics(kafka_bootstrap, [name])
    deadline = time.monotonic() + 10
    while name in broker.list_topics(kafka_bootstrap) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert name not in broker.list_topics(kafka_bootstrap)
    broker.delete_topics(kafka_bootstrap, [name])  # deleting a missing topic is a no-op


def test_project_topics_retain_history(kafka_bootstrap: str) -> None:
    from confluent_kafka.admin import AdminClient, ConfigResource

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    res = ConfigResource(ConfigResource.Type.TOPIC, "md.trades.v1")
    cfg = admin.describe_configs([res])[res].result(10)
    assert cfg["retention.ms"].value == "-1"


@external
def test_up_is_idempotent_and_formats_once(kafka_bootstrap: str, kafka_data_dir: Path) -> None:
    pid = broker.status(kafka_bootstrap, kafka_data_dir)["pid"]
    before = _meta(kafka_data_dir)
    t0 = time.monotonic()
    assert broker.up(kafka_bootstrap, kafka_data_dir) == kafka_bootstrap
    assert time.monotonic() - t0 < 10
    assert broker.status(kafka_bootstrap, kafka_data_dir)["pid"] == pid
    assert _meta(kafka_data_dir) == before


@pytest.mark.slow
@external
def test_lifecycle_up_down_up_keeps_storage(tmp_path: Path) -> None:
    bootstrap = f"127.0.0.1:{_free_port_pair()}"
    name = f"test.{uuid.uuid4().hex[:8]}.orders.v1"
    try:
        assert broker.up(bootstrap, tmp_path, {name: 3}, timeout_s=120) == bootstrap
        st = broker.status(bootstrap, tmp_path)
        assert st["running"] and st["pid"] and st["topics"][name] == 3
        assert (tmp_path / "kafka" / "broker.log").exists()
        before = _meta(tmp_path)

        assert broker.down(tmp_path) is True
        assert not (tmp_path / "kafka" / "broker.pid").exists()
        st = broker.status(bootstrap, tmp_path)
        assert not st["running"] and st["pid"] is None
        assert broker.down(tmp_path) is False

        broker.up(bootstrap, tmp_path, timeout_s=120)
        assert _meta(tmp_path) == before  # not re-formatted: same cluster, same file
        assert broker.list_topics(bootstrap)[name] == 3  # data survived the restart
    finally:
        broker.down(tmp_path)


def test_remote_bootstrap_is_never_started(tmp_path: Path) -> None:
    # TEST-NET-1 address: not loopback, nothing answers there.
    with pytest.raises(RuntimeError, match="not starting"):
        broker.up("192.0.2.1:9092", tmp_path, timeout_s=1.5)
    assert not (tmp_path / "kafka").exists()


def test_is_loopback() -> None:
    assert broker.is_loopback("127.0.0.1:9092")
    assert broker.is_loopback("localhost:9092,127.0.0.2:9093")
    assert broker.is_loopback("[::1]:9092")
    assert not broker.is_loopback("kafka:9092")
    assert not broker.is_loopback("127.0.0.1:9092,10.0.0.5:9092")
    with pytest.raises(ValueError):
        broker.parse_bootstrap("nohostport")

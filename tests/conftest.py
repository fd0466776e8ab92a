"""Shared fixtures: a real Kafka broker (no mocks) and the ClickHouse fixtures.

`kafka_bootstrap`: `$KAFKA_BOOTSTRAP` if set, else a local KRaft broker started by
`infra.kafka.broker.up` on a port derived from this checkout's path (so two checkouts on one
machine never share a broker; `$CRYPTOFLOW_TEST_KAFKA` overrides it) with its data in
`var/test-kafka` (`$CRYPTOFLOW_TEST_KAFKA_DIR`). The broker is LEFT RUNNING after the session, so
the next run (and other sessions, serialised by a file lock) start in milliseconds; stop it with
`CRYPTOFLOW_TEST_KAFKA_STOP=1 pytest ...` or
`python -c "from infra.kafka import broker; broker.down('var/test-kafka')"`.
Without Java or Maven (and no cached jars) Kafka tests are skipped.
"""

from __future__ import annotations

import os
import shutil
import uuid
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _ch_fixtures import ch_db, ch_dsn  # noqa: F401  (fixtures, registered by import)

ROOT = Path(__file__).resolve().parents[1]
# Even port in 20000-23998 (the controller listens on port + 1), stable per checkout.
_PORT = 20000 + 2 * (zlib.crc32(str(ROOT).encode()) % 2000)
TEST_KAFKA_BOOTSTRAP = os.environ.get("CRYPTOFLOW_TEST_KAFKA", f"127.0.0.1:{_PORT}")
TEST_KAFKA_DIR = Path(os.environ.get("CRYPTOFLOW_TEST_KAFKA_DIR", ROOT / "var" / "test-kafka"))


@pytest.fixture(scope="session")
def kafka_data_dir() -> Path:
    """Data dir of the locally managed test broker (its files are under `<this>/kafka`)."""
    return TEST_KAFKA_DIR


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_data_dir: Path) -> Iterator[str]:
    from infra.kafka import broker

    env = os.environ.get("KAFKA_BOOTSTRAP")
    if env:
        yield broker.up(env, kafka_data_dir, timeout_s=60)
        return
    jars_cached = (broker.kafka_home() / "lib" / ".complete").exists()
    if shutil.which("java") is None or (not jars_cached and shutil.which("mvn") is None):
        pytest.skip("Kafka tests need Java 17+ (and Maven once) or KAFKA_BOOTSTRAP")
    bootstrap = broker.up(TEST_KAFKA_BOOTSTRAP, kafka_data_dir, timeout_s=180)
    yield bootstrap
    if os.environ.get("CRYPTOFLOW_TEST_KAFKA_STOP") == "1":
        broker.down(kafka_data_dir)


@pytest.fixture
def kafka_topic(kafka_bootstrap: str) -> Iterator[Callable[..., str]]:
    """Factory: `kafka_topic(partitions=N, suffix="md.trades.v1", config={...})` creates a
    uniquely named topic `test.<uuid8>.<suffix>`; all are deleted after the test."""
    from infra.kafka import broker

    created: list[str] = []

    def make(
        partitions: int = 1, suffix: str = "md.trades.v1", config: dict[str, str] | None = None
    ) -> str:
        name = f"test.{uuid.uuid4().hex[:8]}.{suffix}"
        broker.ensure_topics(
            kafka_bootstrap, {name: partitions}, include_defaults=False, config=config
        )
        created.append(name)
        return name

    yield make
    broker.delete_topics(kafka_bootstrap, created)

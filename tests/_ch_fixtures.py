"""ClickHouse test fixtures (real chDB, no mocks), imported by tests/conftest.py.

chDB allows one data path per process, so the whole session shares one path and tests isolate
themselves by database name. Set CLICKHOUSE_DSN to run against a server instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

_SESSION_DSN: list[str] = []  # memo: stays one path even if these fixtures get registered twice


@pytest.fixture(scope="session")
def ch_dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    if not _SESSION_DSN:
        dsn = os.environ.get("CLICKHOUSE_DSN") or (
            f"chdb://{tmp_path_factory.mktemp('chdb').resolve().as_posix()}"
        )
        _SESSION_DSN.append(dsn)
    return _SESSION_DSN[0]


@pytest.fixture
def ch_db(ch_dsn: str) -> Iterator[str]:
    """A fresh database name (created, dropped after the test); connect(ch_dsn, ch_db)."""
    from infra.clickhouse import connect

    database = f"test_{uuid.uuid4().hex[:12]}"
    client = connect(ch_dsn, database)
    yield database
    client.command(f"DROP DATABASE IF EXISTS `{database}`")

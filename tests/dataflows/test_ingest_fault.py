"""An ingest whose broker cannot be reached ends with a one-line kafka fault, in bounded time."""

from __future__ import annotations

import socket
import time

import pytest

from dataflows.ingest import ingest_file
from infra.faults import Fault
from tests.paths import BARS_2024_01


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_broker_is_a_fault_naming_the_topic_and_progress() -> None:
    t0 = time.monotonic()
    with pytest.raises(Fault) as info:
        ingest_file(
            BARS_2024_01,
            f"127.0.0.1:{_closed_port()}",
            "bars",
            start_ns=1_704_067_200_000_000_000,
            end_ns=1_704_070_800_000_000_000,  # one hour: 120 bars
            progress=False,
            outage_s=2.0,
        )
    f = info.value
    assert f.component == "kafka"
    assert "120 messages to md.bars.v1 not acknowledged" in f.what
    assert "0 of 120 were delivered before" in f.what
    assert "cryptoflow infra status" in f.check
    assert time.monotonic() - t0 < 15

"""`cryptoflow demo` on a broker that already holds data (the user's own, or an earlier run's):
it ingests only the shipped symbols the topic lacks for January 2024, and refuses a topic that
holds part of a symbol's month instead of replaying gaps."""

from __future__ import annotations

import pytest

from dataflows.datalist import file_inventory
from dataflows.demo import symbols_to_ingest
from tests.paths import BARS_2024_01

SHIPPED = {d.symbol: d.count for d in file_inventory(str(BARS_2024_01))[0]}


def test_the_shipped_file_is_the_month_of_both_symbols() -> None:
    assert SHIPPED == {"BTCUSDT": 44_640, "ETHUSDT": 44_640}


@pytest.mark.parametrize(
    ("held", "todo"),
    [
        ({}, ["BTCUSDT", "ETHUSDT"]),  # a fresh broker
        ({"BTCUSDT": 44_640}, ["ETHUSDT"]),  # another run left BTC only
        ({"BTCUSDT": 44_640, "ETHUSDT": 44_640}, []),  # an earlier demo
        ({"BTCUSDT": 89_280, "ETHUSDT": 44_640, "SOLUSDT": 7}, []),  # duplicates, other symbols
    ],
)
def test_only_the_missing_symbols_are_ingested(held: dict[str, int], todo: list[str]) -> None:
    assert symbols_to_ingest(SHIPPED, held, "127.0.0.1:9092") == todo


def test_part_of_a_month_is_refused_with_what_to_do() -> None:
    with pytest.raises(ValueError) as exc:
        symbols_to_ingest(SHIPPED, {"BTCUSDT": 44_640, "ETHUSDT": 1_000}, "127.0.0.1:9092")
    assert str(exc.value) == (
        "md.bars.v1 on 127.0.0.1:9092 holds only part of January 2024 (ETHUSDT: 1,000 of 44,640 "
        "bars); the demo needs the whole month: point KAFKA_BOOTSTRAP at another broker, or "
        "delete the topic"
    )

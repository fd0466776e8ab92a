"""RowBlock: many rows of one class, column by column, equal to the structs they stand for."""

from __future__ import annotations

import math

import pytest

from schemas.blocks import RowBlock, class_of, expand
from schemas.messages import EquityPoint, FeatureRow


def _points(n: int, cash: float = 100.0) -> list[EquityPoint]:
    return [
        EquityPoint("account", 60 * i, 60 * i + 1, cash, 1.5 * i, cash + 1.5 * i) for i in range(n)
    ]


def _block(points: list[EquityPoint]) -> RowBlock:
    return RowBlock(
        EquityPoint,
        {
            "ts_event": [p.ts_event for p in points],
            "ts_init": [p.ts_init for p in points],
            "position_value": [p.position_value for p in points],
            "equity": [p.equity for p in points],
        },
        {"account": points[0].account, "cash": points[0].cash},
    )


def test_structs_are_the_rows_in_order() -> None:
    pts = _points(5)
    b = _block(pts)
    assert len(b) == 5
    assert b.structs() == pts
    assert b.last("equity") == pts[-1].equity and b.last("account") == "account"
    assert list(b.column("cash")) == [100.0] * 5
    assert list(b.column("ts_event")) == [p.ts_event for p in pts]
    assert class_of(b) is EquityPoint and class_of(pts[0]) is EquityPoint


def test_expand_replaces_blocks_in_place() -> None:
    a, c = _points(3), _points(2, cash=7.0)
    row = FeatureRow("BTCUSDT", 0, 1, "core", "v", (math.nan, 1.0))
    got = list(expand([a[0], _block(a[1:]), row, _block(c)]))
    assert got[:3] == a and got[3] is row and got[4:] == c


@pytest.mark.parametrize(
    ("columns", "const", "message"),
    [
        (
            {"ts_event": [1], "ts_init": [1], "position_value": [1.0]},
            {"account": "a", "cash": 1.0},
            "once",
        ),
        (
            {"ts_event": [1], "ts_init": [1], "position_value": [1.0], "equity": [1.0]},
            {"account": "a", "cash": 1.0, "equity": 2.0},
            "once",
        ),
        (
            {"ts_event": [1, 2], "ts_init": [1], "position_value": [1.0], "equity": [1.0]},
            {"account": "a", "cash": 1.0},
            "differ in length",
        ),
        (
            {},
            {
                "account": "a",
                "cash": 1.0,
                "ts_event": 1,
                "ts_init": 1,
                "position_value": 1.0,
                "equity": 1.0,
            },
            "at least one varying column",
        ),
    ],
)
def test_a_block_that_would_drop_or_misalign_a_column_is_refused(
    columns: dict, const: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        RowBlock(EquityPoint, columns, const)

"""`Columns`: many rows of one ClickHouse table, column by column, as one message.

A step that produces a row per bar (feature rows, account equity points) emits one `Columns` per
batch instead of one struct per row: nothing is allocated per row, and the ClickHouse sink hands
the columns to one columnar (Arrow) insert without touching a Python object per value.

    Columns.of("features", symbol=[sym] * n, ts_event=ts, ts_init=ts_init,
               feature_set=[name] * n, version=[version] * n, values=matrix)

Keys are the field names of the table's message class (`infra.clickhouse.TABLES[table]`), without
`run_id` (the sink adds it); a field with a default may be left out (every row then has the
default). A column is a sequence of n values: a list or tuple, or a numpy array; a field that
holds a sequence per row (`FeatureRow.values`) may be an (n, k) array. The stored rows are exactly
those of the structs `rows(cls)` builds, which is also what in-process consumers that want
messages (the `events` sink of tests) get (`dataflows.flow` expands them for that sink only).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import starmap
from typing import Any, TypeVar

import msgspec

S = TypeVar("S", bound=msgspec.Struct)


def as_list(col: Any) -> list[Any]:
    """A column as a list of plain Python values (an (n, k) array: n tuples)."""
    if hasattr(col, "tolist"):  # numpy: plain ints/floats, not numpy scalars
        values = col.tolist()
        return [tuple(r) for r in values] if getattr(col, "ndim", 1) == 2 else values
    return col if type(col) is list else list(col)


@dataclass(frozen=True, slots=True)
class Columns:
    """`n` rows of table `table`: field name -> n values (see the module doc)."""

    table: str
    columns: Mapping[str, Sequence[Any]]
    n: int

    def __post_init__(self) -> None:
        bad = {k: len(v) for k, v in self.columns.items() if len(v) != self.n}
        if bad:
            raise ValueError(f"Columns of {self.table!r}: {self.n} rows, but column lengths {bad}")

    @classmethod
    def of(cls, table: str, **columns: Sequence[Any]) -> Columns:
        """n taken from the columns (all of the same length; at least one column)."""
        if not columns:
            raise ValueError(f"Columns of {table!r}: no columns")
        return cls(table, columns, len(next(iter(columns.values()))))

    def __len__(self) -> int:
        return self.n

    def missing(self, cls: type[msgspec.Struct]) -> list[str]:
        """Fields of `cls` without a default that have no column."""
        fields = msgspec.structs.fields(cls)
        return [f.name for f in fields if f.required and f.name not in self.columns]

    def unknown(self, cls: type[msgspec.Struct]) -> list[str]:
        """Columns that are not fields of `cls`."""
        return sorted(set(self.columns) - {f.name for f in msgspec.structs.fields(cls)})

    def problem(self, table: str, cls: type[msgspec.Struct]) -> str | None:
        """Why these are not rows of `table` (message class `cls`), or None."""
        if self.table != table:
            return f"table {table!r} takes {cls.__name__}, got Columns of {self.table!r}"
        unknown, missing = self.unknown(cls), self.missing(cls)
        if unknown or missing:
            return (
                f"Columns of {table!r} do not fit {cls.__name__}: "
                f"unknown columns {unknown}, missing {missing}"
            )
        return None

    def column(self, field: msgspec.structs.FieldInfo) -> Sequence[Any]:
        """The column of a field of the table's message class; its default if left out."""
        col = self.columns.get(field.name)
        if col is not None:
            return col
        if field.default is not msgspec.NODEFAULT:
            return [field.default] * self.n
        return [field.default_factory() for _ in range(self.n)]

    def rows(self, cls: type[S]) -> list[S]:
        """The rows as structs of `cls` (the table's message class), in order."""
        problem = self.problem(self.table, cls)
        if problem is not None:
            raise ValueError(problem)
        cols = [as_list(self.column(f)) for f in msgspec.structs.fields(cls)]
        return list(starmap(cls, zip(*cols, strict=True)))


def misfit(item: object, table: str, cls: type[msgspec.Struct]) -> str | None:
    """Why `item` is not a row (a `cls` struct) or rows (`Columns`) of `table`, or None."""
    if type(item) is cls:
        return None
    if type(item) is Columns:
        return item.problem(table, cls)
    return f"table {table!r} takes {cls.__name__}, got {type(item).__name__}"

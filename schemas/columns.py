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
from itertools import repeat, starmap
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
        return [f.name for f in msgspec.structs.fields(cls) if f.required and f.name not in self.columns]

    def unknown(self, cls: type[msgspec.Struct]) -> list[str]:
        """Columns that are not fields of `cls`."""
        names = {f.name for f in msgspec.structs.fields(cls)}
        return sorted(set(self.columns) - names)

    def rows(self, cls: type[S]) -> list[S]:
        """The rows as structs of `cls` (the table's message class), in order."""
        if self.unknown(cls) or self.missing(cls):
            raise ValueError(
                f"Columns of {self.table!r} do not fit {cls.__name__}: unknown "
                f"{self.unknown(cls)}, missing {self.missing(cls)}"
            )
        cols: list[Any] = []
        for f in msgspec.structs.fields(cls):
            if f.name in self.columns:
                cols.append(as_list(self.columns[f.name]))
            elif f.default is not msgspec.NODEFAULT:
                cols.append(repeat(f.default, self.n))
            else:  # default_factory: a fresh value per row
                cols.append([f.default_factory() for _ in range(self.n)])
        return list(starmap(cls, zip(*cols, strict=False)))

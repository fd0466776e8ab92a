"""`RowBlock`: many rows of one message class, column by column.

What a replay's hot paths emit instead of one struct per bar (the account's quiet stretches of
equity points, a batch's feature rows): the ClickHouse sink turns the columns into Arrow arrays
without touching a struct, and anything that wants messages gets exactly the structs back
(`structs()`), in row order. Not a wire message: it never leaves the process.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import msgspec


@dataclass(frozen=True, slots=True, eq=False)
class RowBlock:
    """`cls`'s rows: `columns` holds the fields that vary (one value per row, all of one
    length), `const` the fields equal on every row. Together they name every field of `cls`
    exactly once (checked at construction, so a block cannot silently drop a column)."""

    cls: type[msgspec.Struct]
    columns: dict[str, list[Any]]
    const: dict[str, Any]

    def __post_init__(self) -> None:
        fields = self.cls.__struct_fields__
        named = [*self.columns, *self.const]
        if sorted(named) != sorted(fields):
            raise ValueError(
                f"a {self.cls.__name__} block needs each of {list(fields)} once, "
                f"got columns {list(self.columns)} and constants {list(self.const)}"
            )
        if not self.columns:
            raise ValueError(f"a {self.cls.__name__} block needs at least one varying column")
        lengths = {len(v) for v in self.columns.values()}
        if len(lengths) != 1:
            raise ValueError(f"{self.cls.__name__} block columns differ in length: {lengths}")

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    def column(self, name: str) -> Iterable[Any]:
        """One field's values, one per row."""
        if name in self.columns:
            return self.columns[name]
        return repeat(self.const[name], len(self))

    def last(self, name: str) -> Any:
        """One field's value on the last row."""
        return self.columns[name][-1] if name in self.columns else self.const[name]

    def structs(self) -> list[Any]:
        """The rows as `cls` structs, in order."""
        return list(map(self.cls, *(self.column(f) for f in self.cls.__struct_fields__)))


def expand(items: Iterable[Any]) -> Iterator[Any]:
    """`items` with every `RowBlock` replaced, in place, by its structs."""
    for m in items:
        if type(m) is RowBlock:
            yield from m.structs()
        else:
            yield m


def class_of(item: Any) -> type:
    """The message class of a struct, or of a block's rows."""
    return item.cls if type(item) is RowBlock else type(item)


# What a hot-path operator emits: messages, or blocks of them.
Emitted = msgspec.Struct | RowBlock

"""Faults of external components (Kafka broker, ClickHouse, disk) as one-line, actionable errors.

A step that hits a fault it cannot retry away raises `Fault`. Bytewax wraps any step exception
in its own runtime error (and Rust prints a panic), so the first fault of the process is also
remembered here: the CLI prints `first()` as the user-facing message instead of the panic.
"""

from __future__ import annotations

import threading

__all__ = ["Fault", "clear", "first", "raise_fault"]


class Fault(RuntimeError):
    """`<component>: <what happened>; check <what to check>` — one line, no traceback needed."""

    def __init__(self, component: str, what: str, check: str) -> None:
        self.component = component
        self.what = " ".join(what.split())  # one line, whatever the cause's text held
        self.check = check
        super().__init__(f"{component}: {self.what}; check {check}")


_LOCK = threading.Lock()
_FIRST: list[Fault] = []


def raise_fault(component: str, what: str, check: str) -> Fault:
    """Remember the fault (the first one of the process wins) and return it, to `raise`."""
    f = Fault(component, what, check)
    with _LOCK:
        if not _FIRST:
            _FIRST.append(f)
    return f


def first() -> Fault | None:
    with _LOCK:
        return _FIRST[0] if _FIRST else None


def clear() -> None:
    with _LOCK:
        _FIRST.clear()

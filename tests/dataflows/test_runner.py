"""`execute` runs a flow with the pre-existing heap frozen (out of the cyclic GC's full
collections) and leaves the process as it found it, also when the flow fails."""

from __future__ import annotations

import gc

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource

from dataflows.runner import execute


def _flow(seen: list[int], fail_on: int | None = None) -> Dataflow:
    def step(x: int) -> int:
        seen.append(gc.get_freeze_count())
        if x == fail_on:
            raise RuntimeError("boom")
        return x

    flow = Dataflow("gc_probe")
    op.output(
        "out",
        op.map("probe", op.input("in", flow, TestingSource([1, 2, 3])), step),
        TestingSink([]),
    )
    return flow


@pytest.mark.parametrize("workers", [1, 2])
def test_the_heap_is_frozen_while_the_flow_runs_and_only_then(workers: int) -> None:
    before = gc.get_freeze_count()
    seen: list[int] = []
    execute(_flow(seen), workers)
    assert len(seen) == 3
    assert min(seen) > before  # the import-time heap was frozen during every step
    assert gc.get_freeze_count() == before


def test_a_failing_flow_still_unfreezes() -> None:
    before = gc.get_freeze_count()
    seen: list[int] = []
    with pytest.raises(Exception) as info:  # Bytewax wraps it; the cause is ours
        execute(_flow(seen, fail_on=2), 1)
    chain: list[BaseException] = []
    exc: BaseException | None = info.value
    while exc is not None:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    assert any("boom" in str(e) for e in chain)
    assert seen and min(seen) > before
    assert gc.get_freeze_count() == before

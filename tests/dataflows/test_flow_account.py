"""One account across symbols (docs/adr/0009): the flow equals an independent plain event loop
(tests/reference/shared_account_loop.py) exactly on real BTCUSDT + ETHUSDT bars, on one worker
and on two, whatever the order the sources interleave symbols in; a file holding one symbol of
the config uses the whole account."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from bytewax.testing import TestingSource

from operators.account_trader import ACCOUNT
from schemas.messages import NS_PER_MINUTE, Bar, EquityPoint, Fill, Order, PositionSnapshot
from tests.dataflows.flowkit import run_flow, sma_config
from tests.operators.opdata import real_bars
from tests.reference.shared_account_loop import fills_of, shared_account_backtest
from tests.reference.sma_cross_numpy import sma_cross_backtest

FEE = 10.0 * 1e-4  # fee_bps 10, as the config computes it


def _with_gaps() -> tuple[list[Bar], list[Bar]]:
    """A week of real bars per symbol, each with a (different) outage gap, so bars at some
    open times exist for one symbol only."""
    btc, eth = list(real_bars("BTCUSDT")[:10_080]), list(real_bars("ETHUSDT")[:10_080])
    del btc[2_000:2_030]
    del eth[5_000:5_100]
    return btc, eth


def _interleaved(a: list[Bar], b: list[Bar], na: int, nb: int) -> TestingSource:
    """Batches alternating between the symbols, of different sizes: one symbol runs ahead."""
    out: list[list[Bar]] = []
    i = j = 0
    while i < len(a) or j < len(b):
        if i < len(a):
            out.append(a[i : i + na])
            i += na
        if j < len(b):
            out.append(b[j : j + nb])
            j += nb
    return TestingSource(out)


def _account_equity(out: list[Any]) -> list[tuple[int, float]]:
    pts = [m for m in out if isinstance(m, EquityPoint)]
    assert {p.account for p in pts} == {ACCOUNT}
    return sorted((p.ts_event, p.equity) for p in pts)


@pytest.mark.parametrize("fraction", [1.0, 0.5])
@pytest.mark.parametrize("workers", [1, 2])
def test_two_symbols_share_one_account_equal_to_reference(workers: int, fraction: float) -> None:
    btc, eth = _with_gaps()
    ref = shared_account_backtest(btc + eth, interval_ns=NS_PER_MINUTE, fee=FEE, fraction=fraction)
    cfg = sma_config(["BTCUSDT", "ETHUSDT"], sizing={"fraction": fraction})
    out = run_flow(cfg, _interleaved(btc, eth, 997, 613), kind="bars", workers=workers)

    fills = fills_of(out)
    assert len(fills) > 100
    assert {f.symbol for f in fills} == {"BTCUSDT", "ETHUSDT"}
    assert fills == ref["fills"]  # every fill exactly: time, side, price, qty, fee
    equity = _account_equity(out)
    assert equity == ref["equity"]  # one account point per open time, bit-identical
    assert len(equity) == len({b.ts_event for b in btc + eth})
    # both symbols' positions are snapshotted, with the account's cash
    snaps = [m for m in out if isinstance(m, PositionSnapshot)]
    assert {s.symbol for s in snaps} == {"BTCUSDT", "ETHUSDT"}


def test_all_in_first_entry_takes_the_cash() -> None:
    """fraction 1.0 on two symbols: while one position is open the other symbol never buys."""
    btc, eth = _with_gaps()
    out = run_flow(
        sma_config(["BTCUSDT", "ETHUSDT"]), _interleaved(btc, eth, 500, 500), kind="bars"
    )
    held: dict[str, float] = {}
    for f in sorted((m for m in out if isinstance(m, Fill)), key=lambda f: (f.ts_event, f.symbol)):
        if f.side == "buy":
            assert not any(held.values()), "a second all-in entry while one is open"
            held[f.symbol] = f.qty
        else:
            held[f.symbol] = 0.0


def test_output_does_not_depend_on_how_symbols_interleave() -> None:
    btc, eth = _with_gaps()
    cfg = sma_config(["BTCUSDT", "ETHUSDT"], sizing={"fraction": 0.5})
    runs = []
    for src in (
        _interleaved(btc, eth, 997, 613),
        TestingSource([btc[i : i + 4000] for i in range(0, len(btc), 4000)] + [eth]),
        _interleaved(eth, btc, 50, 3000),
    ):
        out = run_flow(cfg, src, kind="bars", workers=2)
        key = (Fill, Order, EquityPoint, PositionSnapshot)
        runs.append(sorted(repr(m) for m in out if isinstance(m, key)))
    assert runs[0] == runs[1] == runs[2]


def test_one_symbol_file_uses_the_whole_account() -> None:
    """Only ETHUSDT in the input, both symbols in the config: the ETHUSDT trades get all of the
    initial cash (no idle BTCUSDT half), equal to the single-symbol numpy reference."""
    eth = list(real_bars("ETHUSDT"))
    cfg = sma_config(["BTCUSDT", "ETHUSDT"])
    out = run_flow(
        cfg, TestingSource([eth[i : i + 997] for i in range(0, len(eth), 997)]), kind="bars"
    )
    ref = sma_cross_backtest(
        np.array([b.open for b in eth]), np.array([b.close for b in eth]), cash0=1_000_000.0
    )
    fills = fills_of(out)
    assert len(fills) == len(ref["price"]) > 100
    assert [f.price for f in fills] == ref["price"].tolist()
    np.testing.assert_allclose([f.qty for f in fills], ref["qty"], rtol=1e-9, atol=0)
    first = fills[0]
    assert first.qty * first.price + first.fee == pytest.approx(1_000_000.0, rel=1e-12)
    equity = _account_equity(out)
    assert len(equity) == len(eth)
    assert equity[-1][1] == pytest.approx(ref["final_equity"], rel=1e-9, abs=0)

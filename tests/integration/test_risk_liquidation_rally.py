"""A leveraged short liquidated by a real rally (issue 9, item 7), through the whole flow.

The rally: BTCUSDT on 2021-01-29, when Elon Musk put #bitcoin in his Twitter bio, from 32,018
(08:29 close) to 37,990 (09:33 high), +18.6% in an hour: the largest 1-hour rise in the shared
2021-2022 BTCUSDT 1m bars after the 2021-05-19 crash rebound (a one-off polars search of
max(high over 60 bars) / close 60 bars earlier; `test_the_window_holds_the_rally` checks the
rise from the bars).

The account: examples/risk_limits.toml's margin account at 20x (`max_leverage` 20,
`maintenance_rate` 0.02, a 10 bps liquidation fee), 100k USDT (so a 19x position fills within a
few bars of the example's 25% volume cap), BTCUSDT only, SMA(90/360) long and short (a
10/50 cross covers the short at +2% into the rally, before any liquidation), sized at 19x equity,
risk rules off (`risk.enabled = false`: liquidation is the account's, not a risk rule). The run
starts 2021-01-28 12:00, 20 hours of warm-up. The SMA goes short 57.30657 BTC at the
2021-01-29 04:24 close (~33.2k, 19x) and holds it into the rally.

Found: at the 08:48 bar's close (34,186.74) equity 38,329.54 < maintenance 0.02 x 57.30657 x
34,186.74 = 39,182.50, the first close below it; the liquidation is at the 08:49 open,
34,175.62, realized PnL -59,133.86 plus the 1,958.49 fee, equity after 37,008.30 (= cash).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from schemas.config import Config
from schemas.messages import NS_PER_MINUTE, EquityPoint, Fill, Liquidation, OrderExpired
from tests.integration.riskkit import (
    BPS,
    assert_same_run,
    bar_file,
    bar_index,
    equity_curve,
    iso,
    needs_files,
    ns,
    of,
    positions_before,
    risk_config,
    run,
    snapshots,
    window_bars,
)

pytestmark = needs_files(bar_file("BTCUSDT", 2021))

START, END = "2021-01-28T12:00", "2021-01-29T12:00"
RALLY = ("2021-01-29T08:30", "2021-01-29T09:35")


def bars() -> tuple[Any, ...]:
    return window_bars(("BTCUSDT",), 2021, START, END)


def rally_config() -> Config:
    return risk_config(
        symbols=["BTCUSDT"],
        strategy={"fast": 90, "slow": 360, "long_only": False},
        sizing={"fraction": 19.0},
        portfolio={
            "kind": "margin",
            "initial_cash": 100_000.0,
            "max_leverage": 20.0,
            "maintenance_rate": 0.02,
            "liquidation_fee_bps": 10.0,
        },
        risk={"enabled": False},
    )


@cache
def rally_run(workers: int = 1) -> tuple[Any, ...]:
    return tuple(run(rally_config(), bars(), workers))


def test_the_window_holds_the_rally() -> None:
    lo, hi = ns(RALLY[0]), ns(RALLY[1])
    inside = [b for b in bars() if lo <= b.ts_event < hi]
    rise = max(b.high for b in inside) / inside[0].open - 1.0
    assert rise > 0.18, rise


@pytest.mark.parametrize("workers", [1, 2])
def test_short_is_liquidated_at_the_open_after_equity_falls_below_maintenance(workers: int) -> None:
    cfg = rally_config()
    rate, fee_rate = cfg.portfolio.maintenance_rate, cfg.portfolio.liquidation_fee_bps * BPS
    events = list(rally_run(workers))
    by = bar_index(bars())
    liqs = of(events, Liquidation)
    assert len(liqs) == 1, liqs
    liq = liqs[0]
    t = liq.ts_event  # the open of the bar after the trigger close = that close's time
    assert ns(RALLY[0]) <= t < ns(RALLY[1]), iso(t)
    assert liq.symbol == "BTCUSDT" and liq.account == "account"

    # a short held into the rally at a high leverage
    held = positions_before(events, t)
    q = held["BTCUSDT"]
    assert q < 0.0 and set(held) == {"BTCUSDT"}
    before = [s for s in snapshots(events, "BTCUSDT") if s.ts_event < t][-1]
    assert before.qty == q
    opened = before.ts_event  # the last fill of the short
    points = {p.ts_event: p for p in equity_curve(events)}
    entry = points[opened + NS_PER_MINUTE]
    assert abs(q) * by[("BTCUSDT", opened)].close / entry.equity > 15.0  # leverage at entry

    # independently, from the equity points and the bars: at every close while the short was
    # open, equity == cash + q x (close - avg price); the first close where it is below
    # maintenance_rate x gross exposure is the trigger, the liquidation is at the next open
    trigger = None
    for ts in range(opened + NS_PER_MINUTE, t + 1, NS_PER_MINUTE):
        close = by[("BTCUSDT", ts - NS_PER_MINUTE)].close
        p = points[ts]
        assert p.equity == pytest.approx(p.cash + q * (close - before.avg_price), rel=1e-12)
        maintenance = rate * abs(q) * close
        if p.equity < maintenance:
            trigger = (ts, p, maintenance)
            break
    assert trigger is not None, "equity never fell below maintenance margin"
    ts, p, maintenance = trigger
    assert ts == t, f"below maintenance at the {iso(ts)} close, liquidated at {iso(t)}"
    assert liq.equity_before == pytest.approx(p.equity, rel=1e-12)
    assert liq.maintenance_margin == pytest.approx(maintenance, rel=1e-12)

    # at that bar's open, all of it, with the fee; the books after it
    bar = by[("BTCUSDT", t)]
    assert liq.price == bar.open != by[("BTCUSDT", t - NS_PER_MINUTE)].close
    assert liq.side == "buy" and liq.qty == abs(q)
    assert liq.fee == pytest.approx(abs(q) * bar.open * fee_rate, rel=1e-12)
    assert liq.realized_pnl == pytest.approx((before.avg_price - liq.price) * abs(q), rel=1e-12)
    after = [s for s in snapshots(events, "BTCUSDT") if s.ts_event == t]
    assert [s.qty for s in after] == [0.0]
    cash = p.cash + liq.realized_pnl - liq.fee
    assert after[0].cash == pytest.approx(cash, rel=1e-12)
    assert not [f for f in of(events, Fill) if f.ts_event == t]  # nothing else in that bar
    # the orders working at the trigger close (the strategy's cover) were canceled first
    working = [o for o in of(events, OrderExpired) if o.ts_event == t]
    assert all(o.reason == "canceled" and o.filled_qty == 0.0 for o in working)
    flat = points[t + NS_PER_MINUTE]  # the liquidation bar's close: flat, equity == cash
    assert flat.position_value == 0.0 and flat.equity == flat.cash
    assert flat.cash == pytest.approx(cash, rel=1e-12)
    print(
        f"\nshort {q:g} BTC from {iso(opened)} (avg {before.avg_price:.2f}); at the "
        f"{iso(t - NS_PER_MINUTE)} bar's close equity {p.equity:.2f} < maintenance "
        f"{maintenance:.2f}; liquidated {iso(t)} at {liq.price} (realized {liq.realized_pnl:.2f}, "
        f"fee {liq.fee:.2f}); equity after {flat.equity:.2f}"
    )


def test_two_workers_give_the_same_run() -> None:
    one, two = list(rally_run()), list(rally_run(workers=2))
    assert of(one, Liquidation)
    assert_same_run(one, two)
    assert of(one, EquityPoint) == of(two, EquityPoint)

"""Execution simulator for bar data: market, limit and stop-market orders (docs/execution.md).

Per bar of a symbol, in this order: orders whose submit time + latency <= the bar's open become
active; GTD orders whose expiry is before the bar's close expire; every active order that can
trade in the bar gets a place on the bar's intrabar path (O->L->H->C when close >= open, else
O->H->L->C); fills are made in path order (then submission order) from one shared capacity of
`max_volume_share * volume`; what an IOC order did not fill expires. A limit fills at its price
(maker) or at the open when a later bar opens through it; a limit marketable on arrival is a
taker at the open capped at the limit; a stop triggers at its price, or at the open on a gap,
and fills as a taker. Taker fills pay slippage against the trader:

    slippage_bps = fixed_bps + k_size_bps * fill_qty / bar.volume + k_vol_bps * (high - low) / open

Fees are `maker_fee_bps` / `taker_fee_bps` of the fill's notional, in quote.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import pairwise

import msgspec

from schemas.messages import (
    Bar,
    CancelOrder,
    ExpiryReason,
    Fill,
    Liquidity,
    OrderExpired,
    OrderFilled,
    SubmitOrder,
)

BPS = 1e-4
DONE_REL = 1e-12  # leaves below this fraction of the order are float residue: done
MAX_SLIPPAGE_BPS = 5_000.0  # a sanity bound (half the price) so a sell never fills at <= 0


@dataclass(frozen=True)
class SimConfig:
    maker_fee_bps: float = 0.0
    taker_fee_bps: float = 0.0
    slippage_bps: float = 0.0  # fixed part, taker fills only
    k_size_bps: float = 0.0  # per unit of fill qty / bar volume
    k_vol_bps: float = 0.0  # per unit of bar range / open
    latency_ns: int = 0
    # of each bar's volume, shared by all orders of the symbol; inf = no cap (fills whatever
    # the size, even in a bar without volume: the plain backtest's assumption)
    max_volume_share: float = 1.0
    # per symbol: fills are whole multiples of this base step (the exchange's LOT_SIZE): a
    # quote-budget fill is floored to it, and so is a fill the bar's volume cuts short
    lot_sizes: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        for name in ("maker_fee_bps", "taker_fee_bps", "slippage_bps", "k_size_bps", "k_vol_bps"):
            if not getattr(self, name) >= 0.0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.latency_ns < 0:
            raise ValueError(f"latency_ns must be >= 0, got {self.latency_ns}")
        share = self.max_volume_share
        if not (0.0 < share <= 1.0 or share == math.inf):
            raise ValueError(f"max_volume_share must be in (0, 1] or inf, got {share}")
        if any(not step >= 0.0 for _, step in self.lot_sizes):
            raise ValueError(f"lot sizes must be >= 0, got {self.lot_sizes}")


@dataclass
class _Working:
    order: SubmitOrder
    seq: int
    active_ts: int  # first bar open time at which it may trade
    leaves_qty: float
    leaves_quote: float
    filled_qty: float = 0.0
    n_fills: int = 0
    active: bool = False
    arrived: bool = False  # has seen its first active bar
    triggered: bool = False  # stops: now a market order
    unfillable: bool = False  # its budget buys less than one lot


@dataclass
class _Candidate:
    w: _Working
    pos: float  # distance travelled along the intrabar path when it trades
    base: float  # price on the path
    liquidity: Liquidity
    cap_price: float = 0.0  # a taker limit never fills beyond its limit


def _path(bar: Bar) -> tuple[float, float, float, float]:
    if bar.close >= bar.open:
        return (bar.open, bar.low, bar.high, bar.close)
    return (bar.open, bar.high, bar.low, bar.close)


def _reach(path: tuple[float, float, float, float], level: float) -> float:
    """Distance along the path until the price first reaches `level` (inf if it never does)."""
    travelled = 0.0
    for a, b in pairwise(path):
        if min(a, b) <= level <= max(a, b):
            return travelled + abs(level - a)
        travelled += abs(b - a)
    return float("inf")


@dataclass
class ExecutionSim:
    config: SimConfig = field(default_factory=SimConfig)
    working: dict[str, list[_Working]] = field(default_factory=dict)  # by symbol, by seq
    _seq: int = field(default=0, init=False)
    _ids: set[str] = field(default_factory=set, init=False)  # every id seen: refuse duplicates
    _lots: dict[str, float] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self._lots = dict(self.config.lot_sizes)

    def submit(self, cmd: SubmitOrder) -> None:
        """Queue an order; it becomes active at its first bar open >= ts_event + latency."""
        _validate(cmd)
        if cmd.order_id in self._ids:
            raise ValueError(f"duplicate order_id {cmd.order_id!r}")
        self._ids.add(cmd.order_id)
        self._seq += 1
        w = _Working(
            order=cmd,
            seq=self._seq,
            active_ts=cmd.ts_event + self.config.latency_ns,
            leaves_qty=cmd.qty,
            leaves_quote=cmd.quote_budget,
        )
        self.working.setdefault(cmd.symbol, []).append(w)

    def cancel(self, cmd: CancelOrder) -> OrderExpired | None:
        """Stop working an order now; None when it is unknown or already done."""
        for orders in self.working.values():
            for w in orders:
                if w.order.order_id == cmd.order_id:
                    orders.remove(w)
                    return _expired(w, "canceled", cmd.ts_event, cmd.ts_init)
        return None

    def open_orders(self, symbol: str) -> list[SubmitOrder]:
        return [w.order for w in self.working.get(symbol, [])]

    def amend(self, order_id: str, *, stop_price: float = 0.0, limit_price: float = 0.0) -> bool:
        """Move a working order's stop or limit price (a trailing stop); False if it is gone.
        Its place in the queue and what it filled so far are kept."""
        for orders in self.working.values():
            for w in orders:
                if w.order.order_id == order_id:
                    changes: dict[str, float] = {}
                    if stop_price > 0.0:
                        changes["stop_price"] = stop_price
                    if limit_price > 0.0:
                        changes["limit_price"] = limit_price
                    w.order = msgspec.structs.replace(w.order, **changes)
                    return True
        return False

    def on_bar(self, bar: Bar) -> list[OrderFilled | OrderExpired]:
        orders = self.working.get(bar.symbol)
        if not orders:
            return []
        out: list[OrderFilled | OrderExpired] = []
        live: list[_Working] = []
        for w in orders:
            if not w.active and w.active_ts <= bar.ts_event:
                w.active = True
            o = w.order
            if w.active and o.time_in_force == "GTD" and o.expire_ts < bar.ts_close:
                out.append(_expired(w, "GTD", o.expire_ts, bar.ts_init))
                continue
            live.append(w)
        cands = [c for w in live if w.active and (c := self._candidate(w, bar)) is not None]
        cands.sort(key=lambda c: (c.pos, c.w.seq))
        share = self.config.max_volume_share
        capacity = math.inf if share == math.inf else share * bar.volume
        for c in cands:
            if capacity <= 0.0:
                break
            fill = self._fill(c, bar, capacity)
            if fill is not None:
                capacity -= fill.qty
                out.append(fill)
        keep: list[_Working] = []
        for w in live:
            done = w.leaves_qty <= 0.0 and w.leaves_quote <= 0.0
            if w.unfillable:
                out.append(_expired(w, "unfillable", bar.ts_event, bar.ts_init))
                continue
            if not done and w.active and w.order.time_in_force == "IOC":
                out.append(_expired(w, "IOC", bar.ts_event, bar.ts_init))
                continue
            if w.active:
                w.arrived = True
            if not done:
                keep.append(w)
        self.working[bar.symbol] = keep
        return out

    def _candidate(self, w: _Working, bar: Bar) -> _Candidate | None:
        """Where on this bar's path the order trades, at what base price, or None."""
        o = w.order
        buy = o.side == "buy"
        ioc = o.time_in_force == "IOC"  # immediate: only the arrival (the open) counts
        if o.order_type == "market" or w.triggered:
            return _Candidate(w, 0.0, bar.open, "taker")
        if o.order_type == "stop":
            s = o.stop_price
            if (bar.open >= s) if buy else (bar.open <= s):
                w.triggered = True
                return _Candidate(w, 0.0, bar.open, "taker")  # gapped through: the open
            if not ioc and ((bar.high >= s) if buy else (bar.low <= s)):
                w.triggered = True
                return _Candidate(w, _reach(_path(bar), s), s, "taker")
            return None
        lim = o.limit_price
        if (bar.open <= lim) if buy else (bar.open >= lim):
            if not w.arrived:  # marketable on arrival: takes liquidity, never beyond the limit
                return _Candidate(w, 0.0, bar.open, "taker", cap_price=lim)
            return _Candidate(w, 0.0, bar.open, "maker")  # resting, the bar opened through it
        if not ioc and ((bar.low <= lim) if buy else (bar.high >= lim)):
            return _Candidate(w, _reach(_path(bar), lim), lim, "maker")
        return None

    def _fill(self, c: _Candidate, bar: Bar, capacity: float) -> OrderFilled | None:
        cfg = self.config
        w, o = c.w, c.w.order
        sign = 1.0 if o.side == "buy" else -1.0
        taker = c.liquidity == "taker"
        fee_rate = (cfg.taker_fee_bps if taker else cfg.maker_fee_bps) * BPS
        # the parts of the slippage that do not depend on the fill's size
        fixed = (
            (cfg.slippage_bps + cfg.k_vol_bps * (bar.high - bar.low) / bar.open) if taker else 0.0
        )
        lot = self._lots.get(o.symbol, 0.0)
        if w.leaves_quote > 0.0:  # quote budget (market buys): size at the price before impact
            qty = min(capacity, w.leaves_quote / (c.base * (1.0 + fixed * BPS) * (1.0 + fee_rate)))
            if lot > 0.0:
                budget_bound = qty < capacity
                qty = _floor(qty, lot)
                if not qty > 0.0 and budget_bound:
                    w.leaves_quote, w.unfillable = 0.0, True  # less than one lot: never fills
                    return None
        else:
            qty = min(capacity, w.leaves_qty)
            if lot > 0.0 and capacity < w.leaves_qty:  # the volume binds: whole lots only
                qty = _floor(qty, lot)
        if not qty > 0.0:
            return None
        size = 0.0
        if taker and cfg.k_size_bps > 0.0:
            size = cfg.k_size_bps * qty / bar.volume if bar.volume > 0.0 else MAX_SLIPPAGE_BPS
        slip = min(fixed + size, MAX_SLIPPAGE_BPS) if taker else 0.0
        price = c.base * (1.0 + sign * slip * BPS)
        if c.cap_price > 0.0:
            price = min(price, c.cap_price) if sign > 0 else max(price, c.cap_price)
            slip = sign * (price / c.base - 1.0) / BPS
        if w.leaves_quote > 0.0:
            qty = min(qty, w.leaves_quote / (price * (1.0 + fee_rate)))
            if lot > 0.0:
                qty = _floor(qty, lot)
                if not qty > 0.0:
                    return None
            cost = qty * price * (1.0 + fee_rate)
            w.leaves_quote = w.leaves_quote - cost
            if w.leaves_quote <= DONE_REL * o.quote_budget or qty < capacity:
                w.leaves_quote = 0.0  # the budget, not the volume, bound it: spent
        else:
            w.leaves_qty = w.leaves_qty - qty
            if w.leaves_qty <= DONE_REL * o.qty:
                w.leaves_qty = 0.0  # float residue of a capacity equal to the leaves
        w.filled_qty += qty
        w.n_fills += 1
        return OrderFilled(
            fill_id=f"{o.order_id}-{w.n_fills}",
            order_id=o.order_id,
            symbol=o.symbol,
            ts_event=bar.ts_event,
            ts_init=bar.ts_init,
            side=o.side,
            price=price,
            qty=qty,
            fee=qty * price * fee_rate,
            liquidity=c.liquidity,
            base_price=c.base,
            slippage_bps=slip,
            leaves_qty=w.leaves_qty,
            leaves_quote=w.leaves_quote,
            done=w.leaves_qty <= 0.0 and w.leaves_quote <= 0.0,
        )


def _floor(x: float, step: float) -> float:
    """x floored to a multiple of step (1e-9 of a step of float slack, like the risk grid)."""
    return math.floor(x / step + 1e-9) * step


def _expired(w: _Working, reason: ExpiryReason, ts_event: int, ts_init: int) -> OrderExpired:
    return OrderExpired(
        order_id=w.order.order_id,
        symbol=w.order.symbol,
        ts_event=ts_event,
        ts_init=ts_init,
        reason=reason,
        filled_qty=w.filled_qty,
        leaves_qty=w.leaves_qty,
        leaves_quote=w.leaves_quote,
    )


def _validate(o: SubmitOrder) -> None:
    if (o.qty > 0.0) == (o.quote_budget > 0.0):
        raise ValueError(f"{o.order_id}: exactly one of qty and quote_budget must be > 0")
    if o.quote_budget > 0.0 and not (o.order_type == "market" and o.side == "buy"):
        raise ValueError(f"{o.order_id}: a quote budget is for market buys only")
    if o.order_type == "limit" and not o.limit_price > 0.0:
        raise ValueError(f"{o.order_id}: a limit order needs limit_price > 0")
    if o.order_type == "stop" and not o.stop_price > 0.0:
        raise ValueError(f"{o.order_id}: a stop order needs stop_price > 0")
    if o.time_in_force == "GTD" and o.expire_ts <= 0:
        raise ValueError(f"{o.order_id}: a GTD order needs expire_ts > 0")


def to_fill(f: OrderFilled) -> Fill:
    """The wire `Fill` (fills.v1, `fills` table) of a simulated fill."""
    return Fill(
        fill_id=f.fill_id,
        order_id=f.order_id,
        symbol=f.symbol,
        ts_event=f.ts_event,
        ts_init=f.ts_init,
        side=f.side,
        price=f.price,
        qty=f.qty,
        fee=f.fee,
        liquidity=f.liquidity,
    )

"""One conformance suite for every risk rule in operators/risk/, discovered, not listed: a new rule
file is held to the same contract without touching this test.

Checks: answer is a Denial or None; pure (same context, same answer; context not mutated);
picklable; never raises on hostile contexts (NaN, ±inf, zero, negative, missing marks / views);
risk-reducing orders pass every tier but ORDER; a class-level name equal to its file name; every
config field documented in docs/risk.md with its default; the rule's `[risk.<rule>]` config
section (schemas/risk_config.py) holds exactly its fields plus `enabled`, with the same defaults.
Exit generators likewise.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import math
import pickle
import pkgutil
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import operators.risk
from operators.risk.context import Denial, MarketView, RiskContext, Tier
from operators.risk.engine import RiskEngine, default_rules
from operators.risk.exits import ExitIntent, Position
from schemas.risk_config import CHECK_SECTIONS, EXIT_SECTIONS, RiskConfig
from tests.paths import ROOT

SYMS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BTCUSDC", "XRPUSDT")
DOCS = (ROOT / "docs" / "risk.md").read_text()


def _discover() -> tuple[list[type], list[type]]:
    checks: list[type] = []
    exits: list[type] = []
    for info in pkgutil.iter_modules(operators.risk.__path__):
        if info.name == "build":  # the builders from config; its disabled breakers are variants
            continue
        mod = importlib.import_module(f"operators.risk.{info.name}")
        for obj in vars(mod).values():
            if not (
                inspect.isclass(obj)
                and obj.__module__ == mod.__name__
                and dataclasses.is_dataclass(obj)
            ):
                continue
            if callable(getattr(obj, "check", None)) and isinstance(
                getattr(obj, "tier", None), Tier
            ):
                checks.append(obj)
            elif callable(getattr(obj, "exits", None)):
                exits.append(obj)
    return sorted(checks, key=lambda c: c.name), sorted(exits, key=lambda c: c.name)


CHECKS, EXITS = _discover()
ALL = CHECKS + EXITS


def test_discovery_finds_the_designed_rules() -> None:
    names = {c.name for c in CHECKS}
    assert {
        "min_notional",
        "lot_tick",
        "price_band",
        "max_order_notional",
        "max_position_pct",
        "max_leverage",
        "max_daily_loss",
        "max_trades_per_day",
        "loss_cooldown",
        "gross_exposure",
        "net_exposure",
        "per_asset_cap",
        "max_open_positions",
        "drawdown_breaker",
        "black_swan",
        "stale_data",
        "min_sharpe",
        "reduce_only",
    } <= names
    assert {e.name for e in EXITS} == {"stop_loss", "take_profit", "trailing_stop"}


def test_default_engine_runs_every_discovered_check() -> None:
    assert {type(r) for r in default_rules()} == set(CHECKS)
    tiers = [r.tier for r in RiskEngine().rules]
    assert tiers == sorted(tiers)


# -- hostile contexts ---------------------------------------------------------------------------

ODD = st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, -1.0, 1e-300, 1e300, -1e300])
ANY_FLOAT = st.one_of(ODD, st.floats(allow_nan=True, allow_infinity=True))
SANE = st.floats(min_value=1e-6, max_value=1e6)
NUM = st.one_of(SANE, ANY_FLOAT)
TS = st.one_of(st.integers(0, 2**63 - 1), st.sampled_from([0, -1, 2**63 - 1]))
OPT_NUM = st.one_of(st.none(), NUM)

views = st.builds(
    MarketView,
    last_price=NUM,
    realized_vol=OPT_NUM,
    normal_vol=OPT_NUM,
    last_bar_ts=st.one_of(st.none(), TS),
)


@st.composite
def contexts(draw: st.DrawFn) -> RiskContext:
    symbol = draw(st.sampled_from(SYMS))
    positions = draw(st.dictionaries(st.sampled_from(SYMS), NUM, max_size=5))
    marks = draw(st.dictionaries(st.sampled_from(SYMS), NUM, max_size=5))  # may miss positions
    qty, price = draw(NUM), draw(NUM)
    common: dict[str, Any] = dict(
        ts=draw(TS),
        symbol=symbol,
        side=draw(st.sampled_from(["buy", "sell"])),
        qty=qty,
        price=price,
        notional=draw(st.one_of(st.just(qty * price), NUM)),
        limit_price=draw(st.one_of(st.none(), NUM)),
        equity=draw(NUM),
        cash=draw(NUM),
        sod_equity=draw(NUM),
        peak_equity=draw(NUM),
        positions=positions,
        marks=marks,
        market=draw(st.dictionaries(st.sampled_from(SYMS), views, max_size=5)),
        trades_today=draw(st.integers(-5, 100)),
        consecutive_losses=draw(st.integers(-5, 100)),
        last_loss_ts=draw(st.one_of(st.none(), TS)),
        sharpe=draw(OPT_NUM),
        reduce_only=draw(st.booleans()),
        tick_size=draw(st.one_of(st.sampled_from([0.01, 0.0]), NUM)),
        lot_size=draw(st.one_of(st.sampled_from([0.00001, 0.001, 0.0]), NUM)),
        min_notional=draw(st.one_of(st.just(5.0), NUM)),
    )
    if draw(st.booleans()):  # derived exposure (NaN where a position has no mark)
        return RiskContext.build(**common)
    return RiskContext(
        **common,
        gross_exposure=draw(NUM),
        net_exposure=draw(NUM),
        open_positions=draw(st.integers(-3, 50)),
    )


positions_st = st.builds(
    Position, symbol=st.sampled_from(SYMS), qty=NUM, avg_price=NUM, best_price=NUM
)

HYP = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _answer_key(x: object) -> bytes:
    return pickle.dumps(x)  # NaN-safe equality: nan != nan, but its bytes are equal


@pytest.mark.parametrize("cls", CHECKS, ids=lambda c: c.name)
@HYP
@given(ctx=contexts())
def test_check_contract(cls: type, ctx: RiskContext) -> None:
    rule = cls()
    before = _answer_key(ctx)
    first = rule.check(ctx)
    assert first is None or isinstance(first, Denial)
    if first is not None:
        assert first.rule == cls.name
        assert isinstance(first.reason, str) and first.reason
        assert isinstance(first.value, float | int) and isinstance(first.limit, float | int)
    assert _answer_key(ctx) == before, "check mutated its context"
    assert _answer_key(rule.check(ctx)) == _answer_key(first), "not deterministic"
    clone = pickle.loads(pickle.dumps(rule))
    assert clone == rule
    assert _answer_key(clone.check(pickle.loads(pickle.dumps(ctx)))) == _answer_key(first)


@pytest.mark.parametrize("cls", [c for c in CHECKS if c.tier != Tier.ORDER], ids=lambda c: c.name)
@HYP
@given(ctx=contexts(), frac=st.floats(min_value=1e-6, max_value=1.0))
def test_risk_reducing_orders_pass_beyond_the_order_tier(
    cls: type, ctx: RiskContext, frac: float
) -> None:
    pre = ctx.position_qty
    assume(math.isfinite(pre) and abs(pre) > 1e-9)
    ctx = dataclasses.replace(ctx, side="sell" if pre > 0 else "buy", qty=abs(pre) * frac)
    assume(ctx.reduces_risk)
    assert cls().check(ctx) is None


@pytest.mark.parametrize("cls", EXITS, ids=lambda c: c.name)
@HYP
@given(pos=positions_st, mark=NUM, ts=TS)
def test_exit_contract(cls: type, pos: Position, mark: float, ts: int) -> None:
    rule = cls()
    out = rule.exits(pos, mark, ts)
    assert out is None or isinstance(out, ExitIntent)
    if out is not None:
        assert out.rule == cls.name and out.reason and out.symbol == pos.symbol and out.ts == ts
        assert out.qty == abs(pos.qty) and out.qty > 0
        assert out.side == ("sell" if pos.qty > 0 else "buy")
    assert _answer_key(rule.exits(pos, mark, ts)) == _answer_key(out)
    clone = pickle.loads(pickle.dumps(rule))
    assert clone == rule and _answer_key(clone.exits(pos, mark, ts)) == _answer_key(out)


# -- names and documentation -------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.name)
def test_named_after_its_own_file(cls: type) -> None:
    assert isinstance(cls.__dict__.get("name"), str), "name must be class-level"
    assert cls.__module__ == f"operators.risk.{cls.name}"
    siblings = [c for c in ALL if c.__module__ == cls.__module__]
    assert siblings == [cls], "one rule per file"
    module = inspect.getmodule(cls)
    assert module is not None and (module.__doc__ or "").strip(), "rule file has no docstring"


def _doc_default(v: object) -> str:
    if v is None:
        return "unset"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, tuple):
        return "[]" if not v else repr(list(v))
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, float):
        return format(v, "g") if abs(v) < 1e6 else str(int(v))
    return str(v)


def _rows() -> dict[str, list[str]]:
    rows: dict[str, list[str]] = {}
    for line in DOCS.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        keys = re.findall(r"`(risk\.[a-z_]+\.[a-z_]+)`", line)
        if line.startswith("|") and keys:
            rows[keys[0]] = cells
    return rows


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.name)
def test_config_fields_documented_with_defaults(cls: type) -> None:
    rows = _rows()
    assert f"| `{cls.name}` |" in DOCS, f"{cls.name} missing from docs/risk.md"
    for f in dataclasses.fields(cls):
        key = f"risk.{cls.name}.{f.name}"
        assert key in rows, f"{key} not in docs/risk.md"
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        cells = [c.replace("_", "") for c in rows[key]]
        assert _doc_default(default) in cells, f"{key}: default {default!r} not in {rows[key]}"


@pytest.mark.parametrize("cls", CHECKS, ids=lambda c: c.name)
def test_documented_tier(cls: type) -> None:
    row = next(line for line in DOCS.splitlines() if line.startswith(f"| `{cls.name}` |"))
    assert f"| {cls.tier.name.lower()} |" in row


def _section(name: str) -> type:
    field = RiskConfig.model_fields.get(name)
    assert field is not None, f"no [risk.{name}] section in schemas/risk_config.py"
    assert isinstance(field.annotation, type)
    return field.annotation


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.name)
def test_config_section_is_exactly_the_rule_fields(cls: type) -> None:
    """Nothing configurable is dropped, nothing configured is ignored, defaults agree."""
    fields = _section(cls.name).model_fields  # type: ignore[attr-defined]
    assert "enabled" in fields and fields["enabled"].default is True
    assert set(fields) - {"enabled"} == {f.name for f in dataclasses.fields(cls)}
    for f in dataclasses.fields(cls):
        assert fields[f.name].default == f.default, f"risk.{cls.name}.{f.name}: default differs"
    rows = _rows()
    for key in fields:
        doc = "`risk.<rule>.enabled`" if key == "enabled" else f"`risk.{cls.name}.{key}`"
        assert doc in DOCS, f"{doc} not in docs/risk.md"
        if key != "enabled":
            assert f"risk.{cls.name}.{key}" in rows


def test_every_risk_section_is_a_rule_or_documented() -> None:
    """[risk] holds the switch, one section per discovered rule (docs order), state, monitor."""
    sections = [n for n in RiskConfig.model_fields if n != "enabled"]
    names = {c.name for c in ALL}
    assert set(CHECK_SECTIONS) == {c.name for c in CHECKS}
    assert set(EXIT_SECTIONS) == {c.name for c in EXITS}
    assert sections == [*CHECK_SECTIONS, *EXIT_SECTIONS, "state", "monitor"]
    doc_order = [n for n in re.findall(r"^\| `([a-z_]+)` \|", DOCS, re.M) if n in names]
    assert list(dict.fromkeys(doc_order)) == [*CHECK_SECTIONS, *EXIT_SECTIONS]
    assert "`risk.enabled`" in DOCS
    rows = _rows()
    for name in ("state", "monitor"):
        for key, field in _section(name).model_fields.items():  # type: ignore[attr-defined]
            full = f"risk.{name}.{key}"
            assert full in rows, f"{full} not in docs/risk.md"
            cells = [c.replace("_", "") for c in rows[full]]
            assert _doc_default(field.default) in cells, f"{full}: {field.default!r} not documented"

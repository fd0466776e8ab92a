"""The config of the account, sizing, execution, market rules and the risk engine
(schemas/risk_config.py): defaults, bounds, the rules between sections, unknown keys and `--set`
two levels deep, the [markets] merge, the example profiles and the docs tables."""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path

import pytest
from pydantic import ValidationError

from operators.risk.context import BINANCE_SPOT_SPECS
from schemas.config import Config, ConfigError, load_config
from schemas.risk_config import (
    BINANCE_SPOT_MARKETS,
    CHECK_SECTIONS,
    EXIT_SECTIONS,
    ExecutionConfig,
    MarketConfig,
    PortfolioConfig,
    RiskConfig,
    SizingConfig,
)
from tests.paths import ROOT

EXAMPLES = ROOT / "examples"
DOCS = (ROOT / "docs" / "risk.md").read_text()
ACCOUNT_DOCS = DOCS[DOCS.index("## Account, sizing, execution and market rules") :]
NO_MARKETS = "no market rules for XRPUSDT: add [markets.XRPUSDT] tick_size, lot_size, min_notional"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for var in ("KAFKA_BOOTSTRAP", "CLICKHOUSE_DSN", "CRYPTOFLOW_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _load(tmp: Path, text: str, sets: list[str] | None = None) -> Config:
    p = tmp / "cfg.toml"
    p.write_text(text)
    return load_config(p, sets=sets or [])


def _error(tmp: Path, text: str, sets: list[str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        _load(tmp, text, sets)
    message = str(info.value)
    assert "\n" not in message  # one line
    assert isinstance(info.value.__cause__, ValidationError)
    return message.replace(str(tmp / "cfg.toml"), "{p}")


# --- defaults ------------------------------------------------------------------------------------


def test_defaults() -> None:
    cfg = Config()
    p = cfg.portfolio
    assert (p.kind, p.max_leverage, p.maintenance_rate, p.liquidation_fee_bps) == (
        "spot",
        1.0,
        0.0,
        0.0,
    )
    s = cfg.sizing
    assert (s.mode, s.fraction, s.notional, s.target_vol) == ("fraction", 1.0, 10_000.0, 0.2)
    assert (s.vol_window, s.max_fraction, s.round_to_lot) == (60, 1.0, True)
    e = cfg.execution
    assert (e.fee_bps, e.maker_fee_bps, e.slippage_bps, e.k_size_bps, e.k_vol_bps) == (
        10.0,
        None,
        0.0,
        0.0,
        0.0,
    )
    assert (e.latency_ms, e.max_volume_share, e.time_in_force) == (0.0, 0.1, "GTC")
    r = cfg.risk
    assert r.enabled is True
    assert all(getattr(r, n).enabled for n in (*CHECK_SECTIONS, *EXIT_SECTIONS))
    assert r.max_position_pct.max_pct == 0.08 and r.min_notional.min_notional is None
    assert r.loss_cooldown.cooldown_ns == 3_600_000_000_000
    assert r.stale_data.max_age_ns == 180_000_000_000
    assert (r.stop_loss.pct, r.take_profit.pct, r.trailing_stop.pct) == (0.005, 0.015, 0.01)
    assert (r.state.black_swan_action, r.state.flatten_on_halt) == ("reducing", True)
    assert (r.monitor.vol_window, r.monitor.normal_window, r.monitor.sharpe_window) == (
        60,
        10_080,
        10_080,
    )
    assert set(cfg.markets) == {"BTCUSDT", "ETHUSDT", "SOLUSDT"}


def test_maker_fee_falls_back_to_the_taker_fee() -> None:
    assert ExecutionConfig().maker_fee() == 10.0
    assert ExecutionConfig(fee_bps=7.5).maker_fee() == 7.5
    assert ExecutionConfig(fee_bps=7.5, maker_fee_bps=2.0).maker_fee() == 2.0
    assert ExecutionConfig(maker_fee_bps=0.0).maker_fee() == 0.0  # a zero maker fee is kept


def test_builtin_markets_are_the_risk_contexts_specs() -> None:
    """schemas may not import operators: the two copies of Binance's filters must agree."""
    assert set(BINANCE_SPOT_MARKETS) == set(BINANCE_SPOT_SPECS)
    for sym, spec in BINANCE_SPOT_SPECS.items():
        m = BINANCE_SPOT_MARKETS[sym]
        assert (m.tick_size, m.lot_size, m.min_notional) == (
            spec.tick_size,
            spec.lot_size,
            spec.min_notional,
        )
    assert Config().markets == BINANCE_SPOT_MARKETS


# --- [markets] -----------------------------------------------------------------------------------


def test_a_market_entry_replaces_its_default_only(clean_env: Path) -> None:
    cfg = _load(
        clean_env,
        'symbols = ["btcusdt", "xrpusdt"]\n'
        "[markets.btcusdt]\ntick_size = 0.1\nlot_size = 0.001\nmin_notional = 10.0\n"
        "[markets.XRPUSDT]\ntick_size = 0.0001\nlot_size = 0.1\nmin_notional = 5\n",
    )
    assert cfg.symbols == ["BTCUSDT", "XRPUSDT"]
    assert cfg.markets["BTCUSDT"] == MarketConfig(tick_size=0.1, lot_size=0.001, min_notional=10.0)
    assert cfg.markets["XRPUSDT"] == MarketConfig(tick_size=0.0001, lot_size=0.1, min_notional=5)
    assert cfg.markets["ETHUSDT"] == BINANCE_SPOT_MARKETS["ETHUSDT"]  # untouched defaults stay
    assert cfg.markets["SOLUSDT"] == BINANCE_SPOT_MARKETS["SOLUSDT"]
    assert BINANCE_SPOT_MARKETS["BTCUSDT"].tick_size == 0.01  # the defaults are not mutated


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[markets.BTCUSDT]\ntick_size = 0.01\n",
            "[markets.BTCUSDT] needs `lot_size` in {p} (and 1 more: "
            "[markets.BTCUSDT] needs `min_notional` in {p})",
        ),
        (
            "[markets.BTCUSDT]\ntick = 0.01\nlot_size = 1\nmin_notional = 1\n",
            "unknown key `tick` in [markets.BTCUSDT] of {p}; did you mean `tick_size`? "
            "(and 1 more: [markets.BTCUSDT] needs `tick_size` in {p})",
        ),
        (
            "[markets.BTCUSDT]\ntick_size = -1\nlot_size = 1\nmin_notional = 1\n",
            "markets.BTCUSDT.tick_size = -1 in {p}: Input should be greater than or equal to 0",
        ),
        (
            "[markets.btcusdt]\ntick_size = 1\nlot_size = 1\nmin_notional = 1\n"
            "[markets.BTCUSDT]\ntick_size = 1\nlot_size = 1\nmin_notional = 1\n",
            "duplicate market 'BTCUSDT' (symbols are case-insensitive)",
        ),
        ("[execution]\nlot_size = 1\n", "`lot_size` belongs in [markets.<SYMBOL>]"),
    ],
)
def test_bad_markets(clean_env: Path, text: str, message: str) -> None:
    assert message in _error(clean_env, text)


def test_a_symbol_without_market_rules(clean_env: Path) -> None:
    msg = _error(clean_env, 'symbols = ["XRPUSDT"]\n')
    assert msg == (
        f"[markets] of {{p}}: {NO_MARKETS} (the exchange's filters); sizing.round_to_lot needs them"
    )
    # risk alone needs them too
    msg = _error(clean_env, 'symbols = ["XRPUSDT"]\n[sizing]\nround_to_lot = false\n')
    assert msg.startswith(f"[markets] of {{p}}: {NO_MARKETS}") and "risk.enabled" in msg
    # neither: no market rules needed
    cfg = _load(
        clean_env,
        'symbols = ["XRPUSDT"]\n[sizing]\nround_to_lot = false\n[risk]\nenabled = false\n',
    )
    assert "XRPUSDT" not in cfg.markets
    # a --set that brings in the symbol is named
    with pytest.raises(ConfigError) as info:
        load_config(sets=['symbols=["XRPUSDT"]'])
    assert str(info.value).startswith(f'--set symbols=["XRPUSDT"]: {NO_MARKETS}')
    assert [e["loc"] for e in info.value.errors()] == [("markets",)]
    # and a --set can add the market
    cfg = load_config(
        sets=[
            'symbols=["XRPUSDT"]',
            "markets.XRPUSDT.tick_size=0.0001",
            "markets.XRPUSDT.lot_size=0.1",
            "markets.XRPUSDT.min_notional=5",
        ]
    )
    assert cfg.markets["XRPUSDT"] == MarketConfig(tick_size=0.0001, lot_size=0.1, min_notional=5)


# --- [portfolio] and [sizing] --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[portfolio]\nmax_leverage = 2.0\n",
            "[portfolio] of {p}: portfolio.max_leverage (2) must be 1 for a spot account "
            '(set portfolio.kind = "margin" to trade with leverage)',
        ),
        (
            "[portfolio]\nmaintenance_rate = 0.01\n",
            "[portfolio] of {p}: portfolio.maintenance_rate (0.01) must be 0 for a spot account",
        ),
        (
            '[portfolio]\nkind = "margin"\nmax_leverage = 5.0\nmaintenance_rate = 0.2\n',
            "[portfolio] of {p}: portfolio.maintenance_rate (0.2) must be below the initial "
            "margin rate 1/portfolio.max_leverage (0.2)",
        ),
        (
            '[portfolio]\nkind = "margin"\nmax_leverage = 0.5\n',
            "portfolio.max_leverage = 0.5 in {p}: Input should be greater than or equal to 1",
        ),
        (
            '[portfolio]\nkind = "futures"\n',
            "portfolio.kind = 'futures' in {p}: Input should be 'spot' or 'margin'",
        ),
        (
            "[portfolio]\nliquidation_fee_bps = -1\n",
            "portfolio.liquidation_fee_bps = -1 in {p}: Input should be greater than or equal to 0",
        ),
        (
            "[sizing]\nfraction = 1.5\n",
            "sizing.fraction = 1.5 in {p}: Input should be less than or equal to 1 "
            "(portfolio.max_leverage of a spot account)",
        ),
        (
            '[portfolio]\nkind = "margin"\nmax_leverage = 5.0\n[sizing]\nmax_fraction = 6\n',
            "sizing.max_fraction = 6.0 in {p}: Input should be less than or equal to 5 "
            "(portfolio.max_leverage of a margin account)",
        ),
        ("[sizing]\nfraction = 0\n", "sizing.fraction = 0 in {p}: Input should be greater than 0"),
        ("[sizing]\nvol_window = 1\n", "sizing.vol_window = 1 in {p}: Input should be greater"),
        (
            '[sizing]\nmode = "kelly"\n',
            "sizing.mode = 'kelly' in {p}: Input should be 'fraction', 'fixed_notional' or "
            "'vol_target'",
        ),
    ],
)
def test_bad_account_and_sizing(clean_env: Path, text: str, message: str) -> None:
    assert _error(clean_env, text).startswith(message)


def test_leverage_bounds_the_sizing_fractions(clean_env: Path) -> None:
    margin = '[portfolio]\nkind = "margin"\nmax_leverage = 5.0\nmaintenance_rate = 0.005\n'
    cfg = _load(clean_env, margin + "[sizing]\nfraction = 5.0\nmax_fraction = 3.0\n")
    assert (cfg.sizing.fraction, cfg.sizing.max_fraction, cfg.portfolio.max_leverage) == (5, 3, 5)
    # the error is located at the sizing key, and names the portfolio key too
    with pytest.raises(ConfigError) as info:
        _load(clean_env, margin + "[sizing]\nfraction = 5.5\n")
    assert [e["loc"] for e in info.value.errors()] == [("sizing", "fraction")]
    assert "portfolio.max_leverage" in str(info.value)
    # a --set of the other key is the one named
    msg = _error(clean_env, margin + "[sizing]\nfraction = 4.0\n", ["portfolio.max_leverage=2"])
    assert msg == (
        "--set portfolio.max_leverage=2: Input should be less than or equal to 2 "
        "(portfolio.max_leverage of a margin account)"
    )


# --- [execution] ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("fee_bps", "-1", "greater than or equal to 0"),
        ("maker_fee_bps", "-0.5", "greater than or equal to 0"),
        ("slippage_bps", "-1", "greater than or equal to 0"),
        ("k_size_bps", "-1", "greater than or equal to 0"),
        ("k_vol_bps", "-1", "greater than or equal to 0"),
        ("latency_ms", "-1", "greater than or equal to 0"),
        ("max_volume_share", "0", "greater than 0"),
        ("max_volume_share", "1.01", "must be in (0, 1], or inf for no cap (got 1.01)"),
        ("max_volume_share", "-inf", "greater than 0"),
        ("max_volume_share", "nan", "greater than 0"),
        ("time_in_force", '"GTD"', "Input should be 'GTC' or 'IOC'"),
        ("fee_bps", "nan", "finite number"),
    ],
)
def test_bad_execution(clean_env: Path, key: str, value: str, message: str) -> None:
    msg = _error(clean_env, f"[execution]\n{key} = {value}\n")
    assert msg.startswith(f"execution.{key} = ") and message in msg


# --- [risk] --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[risk.max_position_pct]\nmaxpct = 0.1\n",
            "unknown key `maxpct` in [risk.max_position_pct] of {p}; did you mean `max_pct`?",
        ),
        (
            "[risk.max_postion_pct]\nmax_pct = 0.1\n",
            "unknown key `max_postion_pct` in [risk] of {p}; did you mean `max_position_pct`?",
        ),
        (
            "[risk]\nmax_drawdown = 0.1\n",
            "unknown key `max_drawdown` in [risk] of {p}; "
            "`max_drawdown` belongs in [risk.drawdown_breaker]",
        ),
        (
            "[strategy]\nmax_pct = 0.1\n",
            "unknown key `max_pct` in [strategy] of {p}; `max_pct` belongs in "
            "[risk.max_position_pct] (or [risk.max_daily_loss], [risk.gross_exposure], "
            "[risk.net_exposure] and 1 more)",
        ),
        (
            "[risk.lot_tick]\nlot = 1\n",
            "unknown key `lot` in [risk.lot_tick] of {p}; valid keys: enabled",
        ),
        (
            "[risk.loss_cooldown]\ncooldown_ns = 1.5e12\n",
            "risk.loss_cooldown.cooldown_ns = 1500000000000.0 in {p}: "
            "Input should be a valid integer",
        ),
        (
            '[risk.stale_data]\nmax_age_ns = "3m"\n',
            "risk.stale_data.max_age_ns = '3m' in {p}: Input should be a valid integer",
        ),
        (
            "[risk.stale_data]\nmax_age_ns = 0\n",
            "risk.stale_data.max_age_ns = 0 in {p}: Input should be greater than 0",
        ),
        (
            "[risk.loss_cooldown]\ncooldown_ns = -1\n",
            "risk.loss_cooldown.cooldown_ns = -1 in {p}: Input should be greater than or equal "
            "to 0",
        ),
        (
            "[risk.max_trades_per_day]\nmax_trades = true\n",
            "risk.max_trades_per_day.max_trades = True in {p}: Input should be a valid integer",
        ),
        (
            "[risk.max_open_positions]\nmax_positions = 0\n",
            "risk.max_open_positions.max_positions = 0 in {p}: Input should be greater than or "
            "equal to 1",
        ),
        (
            "[risk.gross_exposure]\nmax_pct = inf\n",
            "risk.gross_exposure.max_pct = inf in {p}: Input should be a finite number",
        ),
        (
            "[risk.min_sharpe]\nmin_sharpe = nan\n",
            "risk.min_sharpe.min_sharpe = nan in {p}: Input should be a finite number",
        ),
        (
            "[risk.max_daily_loss]\nmax_pct = 0\n",
            "risk.max_daily_loss.max_pct = 0 in {p}: Input should be greater than 0",
        ),
        (
            "[risk.min_notional]\nmin_notional = -1\n",
            "risk.min_notional.min_notional = -1 in {p}: Input should be greater than or equal",
        ),
        (
            "[risk.stop_loss]\npct = 1.0\n",
            "risk.stop_loss.pct = 1.0 in {p}: Input should be less than 1",
        ),
        (
            "[risk.trailing_stop]\npct = 0\n",
            "risk.trailing_stop.pct = 0 in {p}: Input should be greater than 0",
        ),
        (
            "[risk.per_asset_cap]\ncaps = [['btc', 0.2], ['BTC', 0.3]]\n",
            "risk.per_asset_cap.caps = [['btc', 0.2], ['BTC', 0.3]] in {p}: "
            "per_asset_cap.caps: duplicate assets in ['BTC', 'BTC']",
        ),
        (
            "[risk.per_asset_cap]\ncaps = [['BTC', 0]]\n",
            "risk.per_asset_cap.caps.0.1 = 0 in {p}: Input should be greater than 0",
        ),
        (
            '[risk.state]\nblack_swan_action = "panic"\n',
            "risk.state.black_swan_action = 'panic' in {p}: Input should be 'reducing' or 'halted'",
        ),
        (
            "[risk.monitor]\nvol_window = 100\nnormal_window = 100\n",
            "[risk.monitor] of {p}: risk.monitor.normal_window (100) must be > vol_window (100)",
        ),
        (
            "[risk.monitor]\nsharpe_window = 1\n",
            "risk.monitor.sharpe_window = 1 in {p}: Input should be greater than or equal to 2",
        ),
    ],
)
def test_bad_risk(clean_env: Path, text: str, message: str) -> None:
    assert _error(clean_env, text).startswith(message)


def test_risk_values_and_caps(clean_env: Path) -> None:
    cfg = _load(
        clean_env,
        "[risk.per_asset_cap]\nmax_pct = 0.2\ncaps = [['btc', 0.3], ['ETH', 0.05]]\n"
        "[risk.min_notional]\nmin_notional = 12.5\n"
        "[risk.take_profit]\npct = 2.0\n"  # no upper bound: a 200% target is allowed
        "[risk.min_sharpe]\nmin_sharpe = -0.5\n"
        "[risk.loss_cooldown]\nenabled = false\ncooldown_ns = 0\n",
    )
    r = cfg.risk
    assert r.per_asset_cap.caps == (("BTC", 0.3), ("ETH", 0.05)) and r.per_asset_cap.max_pct == 0.2
    assert r.min_notional.min_notional == 12.5 and r.take_profit.pct == 2.0
    assert r.min_sharpe.min_sharpe == -0.5
    assert r.loss_cooldown.enabled is False and r.loss_cooldown.cooldown_ns == 0
    with pytest.raises(ValidationError):
        r.max_position_pct.max_pct = 0.5  # type: ignore[misc]  # frozen


def test_set_two_levels_deep(clean_env: Path) -> None:
    cfg = load_config(
        sets=[
            "risk.max_position_pct.max_pct=0.1",
            "risk.drawdown_breaker.enabled=false",
            "risk.enabled=true",
            'risk.per_asset_cap.caps=[["BTC", 0.2]]',
            "risk.state.black_swan_action=halted",  # a bare word
            "risk.monitor.vol_window=30",
        ]
    )
    assert cfg.risk.max_position_pct.max_pct == 0.1
    assert cfg.risk.drawdown_breaker.enabled is False
    assert cfg.risk.per_asset_cap.caps == (("BTC", 0.2),)
    assert cfg.risk.state.black_swan_action == "halted" and cfg.risk.monitor.vol_window == 30
    assert cfg.risk.max_daily_loss.max_pct == 0.02  # the rest keeps its defaults


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (
            "risk.max_position_pct.maxpct=0.1",
            "--set risk.max_position_pct.maxpct=0.1: unknown key `maxpct` in "
            "[risk.max_position_pct]; did you mean `max_pct`?",
        ),
        (
            "risk.max_postion_pct.max_pct=0.1",
            "--set risk.max_postion_pct.max_pct=0.1: unknown key `max_postion_pct` in [risk]; "
            "did you mean `max_position_pct`?",
        ),
        (
            "risk.max_position_pct.max_pct.x=1",
            "--set risk.max_position_pct.max_pct.x=1: `risk.max_position_pct.max_pct` is a "
            "value, not a section; use --set risk.max_position_pct.max_pct=VALUE",
        ),
        (
            "risk.max_position_pct.max_pct=-1",
            "--set risk.max_position_pct.max_pct=-1: Input should be greater than 0",
        ),
        (
            "risk.monitor.normal_window=10",
            "--set risk.monitor.normal_window=10: risk.monitor.normal_window (10) must be > "
            "vol_window (60)",
        ),
        (
            "markets.BTCUSDT.tikc_size=0.1",
            "--set markets.BTCUSDT.tikc_size=0.1: unknown key `tikc_size` in [markets.BTCUSDT]; "
            "did you mean `tick_size`?",
        ),
        (
            "markets.XRPUSDT.tick_size=0.1",
            "--set markets.XRPUSDT.tick_size=0.1: [markets.XRPUSDT] needs `lot_size`",
        ),
        (
            "portfolio.max_leverage=3",
            "--set portfolio.max_leverage=3: portfolio.max_leverage (3) must be 1 for a spot "
            "account",
        ),
        (
            "sizing.max_fraction=1.5",
            "--set sizing.max_fraction=1.5: Input should be less than or equal to 1 "
            "(portfolio.max_leverage of a spot account)",
        ),
    ],
)
def test_bad_set_two_levels_deep(clean_env: Path, item: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(sets=[item])
    assert str(info.value).startswith(message)


def test_unrounded_quantities_with_the_lot_check_on_are_refused_at_start() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(sets=["sizing.round_to_lot=false"])
    assert str(info.value) == (
        "--set sizing.round_to_lot=false: sizing.round_to_lot = false with [risk.lot_tick] on "
        "would refuse every order of BTCUSDT, ETHUSDT (off the lot grid), closing orders "
        "included; set sizing.round_to_lot = true, or risk.lot_tick.enabled = false"
    )
    cfg = load_config(sets=["sizing.round_to_lot=false", "risk.lot_tick.enabled=false"])
    assert not cfg.sizing.round_to_lot and not cfg.risk.lot_tick.enabled


def test_trading_json_covers_the_new_sections() -> None:
    base = load_config().trading_json()
    for item in (
        "risk.max_position_pct.max_pct=0.1",
        "risk.stop_loss.enabled=false",
        "risk.enabled=false",
        "risk.monitor.sharpe_window=500",
        "sizing.round_to_lot=false",
        "sizing.mode=vol_target",
        "execution.k_vol_bps=5",
        "execution.maker_fee_bps=2",
        "execution.time_in_force=IOC",
        "portfolio.liquidation_fee_bps=5",
        "markets.BTCUSDT.tick_size=0.1",
    ):
        sets = [item]
        if item.startswith("markets."):
            sets += ["markets.BTCUSDT.lot_size=0.00001", "markets.BTCUSDT.min_notional=5"]
        if item == "sizing.round_to_lot=false":  # valid only without the lot grid check
            sets += ["risk.lot_tick.enabled=false"]
        assert load_config(sets=sets).trading_json() != base, item
    margin = ["portfolio.kind=margin", "portfolio.max_leverage=3"]
    assert load_config(sets=margin).trading_json() != base
    assert '"markets"' in base and '"monitor"' in base and '"maker_fee_bps"' in base


# --- the example profiles ------------------------------------------------------------------------


def test_sma_cross_is_the_reference_profile(clean_env: Path) -> None:
    cfg = load_config(EXAMPLES / "sma_cross.toml")
    assert cfg.risk.enabled is False
    assert (cfg.sizing.mode, cfg.sizing.fraction, cfg.sizing.round_to_lot) == ("fraction", 1, False)
    assert cfg.portfolio == PortfolioConfig()  # spot
    assert cfg.execution.max_volume_share == math.inf  # no volume cap
    raw = tomllib.loads((EXAMPLES / "sma_cross.toml").read_text())
    assert raw["risk"] == {"enabled": False}


def test_risk_limits_profile(clean_env: Path) -> None:
    path = EXAMPLES / "risk_limits.toml"
    cfg = load_config(path)
    # every tier on at the documented defaults, the order-notional cap sized to the 1M account
    assert cfg.risk == RiskConfig(max_order_notional={"max_notional": 100_000.0})
    assert (cfg.portfolio.kind, cfg.portfolio.max_leverage, cfg.portfolio.maintenance_rate) == (
        "margin",
        5.0,
        0.005,
    )
    assert cfg.sizing == SizingConfig(fraction=0.08, round_to_lot=True)
    assert cfg.execution == ExecutionConfig(
        fee_bps=10,
        maker_fee_bps=10,
        slippage_bps=1,
        k_size_bps=10,
        k_vol_bps=5,
        latency_ms=0,
        max_volume_share=0.25,
    )
    assert cfg.markets == BINANCE_SPOT_MARKETS
    assert cfg.strategy.long_only is False
    # the same strategy as the reference profile
    ref = load_config(EXAMPLES / "sma_cross.toml")
    assert cfg.symbols == ref.symbols and cfg.bars == ref.bars and cfg.features == ref.features
    assert cfg.strategy == ref.strategy.model_copy(update={"long_only": False})
    # every section written out, each with every key a TOML file can hold
    raw = tomllib.loads(path.read_text())
    assert set(raw["risk"]) == set(RiskConfig.model_fields)
    for name in (*CHECK_SECTIONS, *EXIT_SECTIONS, "state", "monitor"):
        keys = set(type(getattr(RiskConfig(), name)).model_fields)
        if name == "min_notional":
            keys -= {"min_notional"}  # unset (None) has no TOML form: the comment says so
        assert set(raw["risk"][name]) == keys, name
    assert set(raw["markets"]) == {"BTCUSDT", "ETHUSDT"}


# --- docs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model", [PortfolioConfig, SizingConfig, ExecutionConfig], ids=lambda m: m.__name__
)
def test_account_sections_documented(model: type[PortfolioConfig]) -> None:
    for key, field in model.model_fields.items():
        row = re.search(rf"^\| `{key}` \| ([^|]+) \|", ACCOUNT_DOCS, re.M)
        assert row is not None, f"{model.__name__}.{key} not in docs/risk.md"
        default = field.default
        if default is None:
            shown = "unset"
        elif isinstance(default, str):
            shown = f'"{default}"'
        elif isinstance(default, bool):
            shown = "true" if default else "false"
        else:
            shown = format(default, "g") if abs(default) < 1e6 else str(int(default))
        assert row.group(1).strip() == shown, f"{key}: default {default!r} vs docs {row.group(1)}"
    for key in MarketConfig.model_fields:
        assert f"`{key}`" in ACCOUNT_DOCS
    assert "[markets.<SYMBOL>]" in DOCS and "`risk.monitor.vol_window`" in DOCS

"""Wire messages round-trip through the codec, are immutable and strict; config validation and
environment overrides."""

from __future__ import annotations

import json
import re
from pathlib import Path

import msgspec
import pytest
from pydantic import ValidationError

import schemas
import schemas.messages
from schemas.codec import DecodeError, decode, decoder, encode, to_dict
from schemas.config import Config, ConfigError, load_config
from schemas.messages import (
    NS_PER_MINUTE,
    AccountState,
    Bar,
    CancelOrder,
    Command,
    DeadLetter,
    EquityPoint,
    FeatureRow,
    FeatureSetInfo,
    Fill,
    FlattenPositions,
    HaltTrading,
    Liquidation,
    Message,
    Metric,
    ModelInfo,
    Order,
    OrderDenied,
    OrderExpired,
    OrderFilled,
    OrderIntent,
    PositionSnapshot,
    PositionState,
    Prediction,
    ResumeTrading,
    RoundTrip,
    RunInfo,
    Signal,
    SubmitOrder,
    Trade,
    TradingStateChanged,
)
from schemas.topics import TOPICS
from tests.paths import ROOT

TS = 1_704_067_200_000_000_000

SAMPLES: list[msgspec.Struct] = [
    Trade("BTCUSDT", TS, TS + 3, 3_355_000_001, 42_283.58, 0.00056, "sell"),
    Bar(
        "ETHUSDT",
        TS,
        TS + NS_PER_MINUTE,
        2281.87,
        2282.94,
        2281.27,
        2282.2,
        170.0969,
        n_trades=9,
        buy_volume=80.5,
    ),
    Signal("BTCUSDT", TS, TS, "sma_cross_10_50", -1, strength=-0.0012, reason="crossed below"),
    OrderIntent("BTCUSDT-1", "BTCUSDT", TS, TS, "buy", quote_budget=500_000.0, ref_price=42_000.1),
    OrderDenied("BTCUSDT-2", "BTCUSDT", TS, TS, "max_order_notional", "too big", 6e4, 5e4, "buy"),
    Order("BTCUSDT-1", "BTCUSDT", TS, TS, "sell", qty=11.9),
    Order(
        "BTCUSDT-3", "BTCUSDT", TS, TS, "sell", 0.5, 0.0, "stop", 0.0, 41_000.0, cause="stop_loss"
    ),
    SubmitOrder("BTCUSDT-4", "BTCUSDT", TS, TS, "buy", 0.1, order_type="limit", limit_price=4e4),
    CancelOrder("BTCUSDT-4", TS, TS),
    OrderFilled(
        "BTCUSDT-4-1",
        "BTCUSDT-4",
        "BTCUSDT",
        TS,
        TS,
        "buy",
        4e4,
        0.1,
        4.0,
        "maker",
        4e4,
        0.0,
        0.0,
        0.0,
        True,
    ),
    OrderExpired("BTCUSDT-5", "BTCUSDT", TS, TS, "IOC", 0.0, 0.2, 0.0),
    Liquidation("account", "BTCUSDT", TS, TS, "buy", 1.0, 45_000.0, 0.0, -5e3, 900.0, 1e3),
    AccountState(
        "account",
        TS,
        TS,
        "margin",
        1e4,
        9e3,
        -1e3,
        0.0,
        10.0,
        4.5e4,
        -4.5e4,
        9e3,
        225.0,
        (PositionState("BTCUSDT", -1.0, 44_000.0, 45_000.0, 0.0, -1e3, 10.0, -4.5e4),),
    ),
    PositionState("ETHUSDT", 2.0, 2_000.0, 2_100.0, 0.0, 200.0, 1.0, 4_200.0),
    TradingStateChanged("account", TS, TS, "active", "halted", "drawdown 5.1% > 5%"),
    HaltTrading("cmd-1", TS, TS, "operator"),
    ResumeTrading("cmd-2", TS, TS),
    FlattenPositions("cmd-3", TS, TS),
    Fill("BTCUSDT-1-1", "BTCUSDT-1", "BTCUSDT", TS, TS, "buy", 42_283.58, 11.8, 499.3),
    PositionSnapshot("ETHUSDT", TS, TS, 1.5, 2281.0, 10.0, -3.5, 2.0, 0.2, 2282.0),
    EquityPoint("ETHUSDT", TS, TS, 10.0, 3423.3, 3433.3),
    Metric("late_trades", TS, TS, 3.0, labels="symbol=BTCUSDT"),
    DeadLetter(TS, "md.trades.v1", "malformed: x", '{"a": 1}', key="BTCUSDT", ts_event=TS - 1),
    RunInfo("run-1", TS, "backtest", "file", 0, 0, "BTCUSDT,ETHUSDT", "{}", summary_json="{}"),
    FeatureRow("ETHUSDT", TS, TS + 1, "full", "0123abcd", (1.5, -0.25, 3e-9)),
    FeatureSetInfo("0123abcd", "full", TS, ("rsi_14", "macd_12_26_9_hist"), ("rsi_14", "macd")),
    Signal(
        "BTCUSDT",
        TS,
        TS,
        "xgb",
        1,
        0.2,
        "p(up) 0.61 >= 0.55",
        "xgb_trend",
        "v3",
        "0123abcd",
        (0.1, 0.29, 0.61),
        0.61,
        10,
    ),
    Prediction(
        "xgb",
        "BTCUSDT",
        TS,
        TS,
        "xgb_trend",
        "v3",
        "0123abcd",
        (-1, 0, 1),
        (0.1, 0.29, 0.61),
        1,
        0.61,
    ),
    ModelInfo(
        "xgb_trend",
        "v3",
        TS,
        TS,
        "xgboost",
        "full",
        "0123abcd",
        "label_thr_10_0p002",
        True,
        '{"folds": []}',
        '{"name": "xgb_trend"}',
    ),
    RoundTrip(
        "BTCUSDT-1",
        "BTCUSDT",
        TS,
        TS,
        "short",
        TS - 600 * 10**9,
        TS,
        0.25,
        43000.0,
        42500.0,
        125.0,
        21.4,
        103.6,
        0.0096,
        600 * 10**9,
        "take_profit",
        "xgb",
        "v3",
        "o-1",
        "o-7",
    ),
]


def test_every_message_type_is_sampled() -> None:
    defined = vars(schemas.messages).values()
    message_types = {t for t in defined if isinstance(t, type) and issubclass(t, Message)}
    message_types -= {schemas.messages._Command}  # the commands' tagged base
    assert message_types - {Message} == {type(m) for m in SAMPLES}
    exported = [getattr(schemas, n) for n in schemas.__all__]
    assert all(t in exported for t in message_types - {Message})


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(msg: msgspec.Struct) -> None:
    data = encode(msg)
    assert isinstance(data, bytes)
    back = decode(data, type(msg))
    assert back == msg and type(back) is type(msg)
    assert decode(data.decode(), type(msg)) == msg  # str input too
    assert encode(back) == data  # byte-identical re-encoding
    # the wire form is plain JSON with the field names
    plain = json.loads(data)
    assert plain == json.loads(json.dumps(msgspec.to_builtins(msg)))  # tuples as lists
    extra = set(plain) - set(to_dict(msg))  # the field names, plus a command's tag
    assert extra == ({"command"} if type(msg).__struct_config__.tag else set())
    assert decoder(type(msg)) is decoder(type(msg))  # one cached decoder per type


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_frozen(msg: msgspec.Struct) -> None:
    field = msg.__struct_fields__[0]
    with pytest.raises(AttributeError):
        setattr(msg, field, getattr(msg, field))
    assert hash(msg) == hash(msgspec.structs.replace(msg))  # frozen structs are hashable


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_unknown_fields_rejected(msg: msgspec.Struct) -> None:
    d = msgspec.to_builtins(msg)
    d["surprise"] = 1
    with pytest.raises(DecodeError, match="unknown field `surprise`"):
        decode(json.dumps(d), type(msg))


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_missing_required_field_rejected(msg: msgspec.Struct) -> None:
    d = msgspec.to_builtins(msg)
    first = msg.__struct_fields__[0]
    del d[first]
    with pytest.raises(DecodeError, match=f"missing required field `{first}`"):
        decode(json.dumps(d), type(msg))


def test_type_and_literal_violations_rejected() -> None:
    d = to_dict(SAMPLES[0])
    with pytest.raises(DecodeError, match="aggressor"):
        decode(json.dumps({**d, "aggressor": "hold"}), Trade)
    with pytest.raises(DecodeError, match="Expected `int`"):
        decode(json.dumps({**d, "ts_event": "now"}), Trade)
    with pytest.raises(DecodeError):
        decode(json.dumps({**to_dict(SAMPLES[-1]), "mode": "dream"}), RunInfo)


def test_defaults_and_bar_close() -> None:
    t = decode(
        b'{"symbol":"BTCUSDT","ts_event":1,"ts_init":2,"trade_id":3,"price":1.5,"size":2,'
        b'"aggressor":"buy"}',
        Trade,
    )
    assert t.venue == "binance_spot" and t.size == 2.0
    bar = SAMPLES[1]
    assert isinstance(bar, Bar)
    assert bar.interval_ns == NS_PER_MINUTE and bar.ts_close == TS + NS_PER_MINUTE
    assert msgspec.structs.replace(bar, interval_ns=5).ts_close == TS + 5


def test_topics_carry_messages() -> None:
    assert {t.name: t.message for t in TOPICS.values()} == {
        "md.trades.v1": Trade,
        "md.bars.v1": Bar,
        "orders.v1": Order,
        "fills.v1": Fill,
        "dlq.v1": DeadLetter,
        "risk.denials.v1": OrderDenied,
        "risk.state.v1": TradingStateChanged,
        "control.commands.v1": Command,
    }
    assert all(t.partitions > 0 for t in TOPICS.values())


# --- config ----------------------------------------------------------------------------------

EXAMPLE = ROOT / "examples" / "sma_cross.toml"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No connection overrides from the environment or a stray .env."""
    for var in ("KAFKA_BOOTSTRAP", "CLICKHOUSE_DSN", "CRYPTOFLOW_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_load_example_config(clean_env: Path) -> None:
    cfg = load_config(EXAMPLE)
    assert cfg.symbols == ["BTCUSDT", "ETHUSDT"]
    assert (cfg.bars.interval_s, cfg.bars.grace_ms) == (60, 2000)
    assert (cfg.strategy.kind, cfg.strategy.fast, cfg.strategy.slow) == ("sma_cross", 10, 50)
    assert cfg.strategy.price == "close" and cfg.strategy.long_only is True
    assert cfg.sizing.fraction == 1.0
    # the reference profile: no risk rules at all, no lot rounding (docs/risk.md)
    assert (cfg.sizing.mode, cfg.sizing.round_to_lot) == ("fraction", False)
    assert cfg.risk.enabled is False and cfg.portfolio.kind == "spot"
    assert (cfg.execution.fee_bps, cfg.execution.slippage_bps) == (10.0, 0.0)
    assert cfg.portfolio.initial_cash == 1_000_000.0 and cfg.portfolio.currency == "USDT"
    assert cfg.kafka.bootstrap == "127.0.0.1:9092"
    # default DSN: an embedded chdb under the data dir (cwd-relative "var")
    expected = (clean_env / "var").resolve().as_posix().lstrip("/")
    assert cfg.clickhouse.dsn == f"chdb:///{expected}/clickhouse"
    with pytest.raises(ValidationError):
        cfg.strategy.fast = 3  # type: ignore[misc]  # frozen


def test_overrides_and_symbol_normalisation(clean_env: Path) -> None:
    cfg = load_config(EXAMPLE, symbols=["btcusdt"], strategy=None)
    assert cfg.symbols == ["BTCUSDT"]
    assert cfg.strategy.slow == 50  # None overrides are ignored
    assert load_config().symbols == ["BTCUSDT", "ETHUSDT"]  # defaults without a file


def test_missing_config_file(clean_env: Path) -> None:
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_config(clean_env / "nope.toml")


def _write(tmp: Path, text: str) -> Path:
    p = tmp / "cfg.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("edit", "loc", "message"),
    [
        (("fast = 10", "fast = 50"), "strategy", "strategy.fast (50) must be < strategy.slow (50)"),
        (("fast = 10", "fast = 60"), "strategy", "must be < strategy.slow"),
        (("[bars]", "[bars]\nspeed = 3"), "bars.speed", "unknown key `speed` in [bars] of "),
        (
            ('symbols = ["BTCUSDT", "ETHUSDT"]', "symbols = []"),
            "symbols",
            "symbols must not be empty",
        ),
        (("symbols = [", 'symbols = ["BTC/USDT", '), "symbols", "bad symbol names"),
        (("fee_bps = 10.0", "fee_bps = -1.0"), "execution.fee_bps", "greater than or equal to 0"),
        (("fraction = 1.0", "fraction = 1.5"), "sizing.fraction", "less than or equal to 1"),
        (("initial_cash = 1000000.0", "initial_cash = 0"), "portfolio.initial_cash", "greater"),
        (('kind = "sma_cross"', 'kind = "rsi"'), "strategy.kind", "sma_cross"),
    ],
)
def test_bad_config_raises_useful_validation_error(
    clean_env: Path, edit: tuple[str, str], loc: str, message: str
) -> None:
    text = EXAMPLE.read_text()
    assert edit[0] in text
    path = _write(clean_env, text.replace(edit[0], edit[1], 1))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    errors = info.value.errors()
    assert any(".".join(str(x) for x in e["loc"]) == loc for e in errors), errors
    assert message in str(info.value)
    assert str(path) in str(info.value) and "\n" not in str(info.value)  # one line, the file
    assert isinstance(info.value.__cause__, ValidationError)  # pydantic's details kept


def test_unknown_top_level_key(clean_env: Path) -> None:
    path = _write(clean_env, EXAMPLE.read_text() + "\n[strategyy]\nfast = 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (
        f"unknown key `strategyy` in the top level of {path}; did you mean `strategy`?"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[strategy]\nfsat = 3\n", "unknown key `fsat` in [strategy] of {p}; did you mean `fast`?"),
        (
            "[features]\nsett = 'full'\n",
            "unknown key `sett` in [features] of {p}; did you mean `set`?",
        ),
        (
            "[kafka]\noutage = 3\n",
            "unknown key `outage` in [kafka] of {p}; did you mean `outage_s`?",
        ),
        (
            "[strategy]\nslippage_bps = 3\n",
            "unknown key `slippage_bps` in [strategy] of {p}; "
            "`slippage_bps` belongs in [execution]",
        ),
        (
            "[risk]\nzzz = 3\n",
            "unknown key `zzz` in [risk] of {p}; valid keys: black_swan, drawdown_breaker, "
            "enabled, gross_exposure, loss_cooldown, lot_tick, max_daily_loss, max_leverage, "
            "max_open_positions, max_order_notional, max_position_pct, max_trades_per_day, "
            "min_notional, min_sharpe, monitor, net_exposure, per_asset_cap, price_band, "
            "reduce_only, stale_data, state, stop_loss, take_profit, trailing_stop",
        ),
        (
            "symbolz = ['BTCUSDT']\n",
            "unknown key `symbolz` in the top level of {p}; did you mean `symbols`?",
        ),
        (
            "[execution]\nfee_bps = -1\n",
            "execution.fee_bps = -1 in {p}: Input should be greater than or equal to 0",
        ),
        (
            "[validation]\nmin_price = 10.0\nmax_price = 1.0\n",
            "[validation] of {p}: validation.min_price (10.0) must be < max_price (1.0)",
        ),
        (
            "[strategy]\nfsat = 3\n[sizing]\nfraction = 0\n",
            "unknown key `fsat` in [strategy] of {p}; did you mean `fast`? (and 1 more: "
            "sizing.fraction = 0 in {p}: Input should be greater than 0)",
        ),
    ],
)
def test_config_errors_name_the_file_and_the_nearest_key(
    clean_env: Path, text: str, message: str
) -> None:
    path = _write(clean_env, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == message.format(p=path)


def test_bad_toml_names_the_file(clean_env: Path) -> None:
    path = _write(clean_env, "[strategy\nfast = 3\n")
    with pytest.raises(ConfigError, match=f"^{re.escape(str(path))} is not valid TOML: "):
        load_config(path)


# --- --set ------------------------------------------------------------------------------------


def test_set_values_are_toml_and_bare_words_strings(clean_env: Path) -> None:
    cfg = load_config(
        EXAMPLE,
        sets=[
            "risk.max_position_pct.max_pct=0.1",  # two levels deep
            "strategy.long_only=false",
            "strategy.fast=20",
            'features.set="full"',
            "portfolio.currency=EUR",  # bare word
            'symbols=["btcusdt", "SOLUSDT"]',
            "kafka.partitions.md.bars.v1=8",  # a topic name with dots, under a mapping
            'feature_sets.mine=["rsi_14", "sma_10"]',
            "strategy.fast = 21",  # spaces around = are fine; the last one wins
        ],
    )
    assert cfg.risk.max_position_pct.max_pct == 0.1
    assert cfg.strategy.long_only is False and cfg.strategy.fast == 21
    assert cfg.strategy.slow == 50  # the rest of the file's section stays
    assert cfg.features.set == "full" and cfg.portfolio.currency == "EUR"
    assert cfg.symbols == ["BTCUSDT", "SOLUSDT"]
    assert cfg.kafka.partitions == {"md.bars.v1": 8}
    assert cfg.feature_sets == {"mine": ["rsi_14", "sma_10"]}
    assert load_config(sets=["strategy.slow=80"]).strategy.slow == 80  # no file: defaults


def test_set_changes_the_trading_config(clean_env: Path) -> None:
    a = load_config(EXAMPLE, sets=["strategy.fast=5"]).trading_json()
    b = load_config(EXAMPLE, sets=["strategy.fast=20"]).trading_json()
    assert a != b and b == load_config(EXAMPLE, sets=["strategy.fast=20"]).trading_json()
    # connection settings are not part of it
    assert load_config(EXAMPLE, sets=["kafka.batch_size=7"]).trading_json() == (
        load_config(EXAMPLE).trading_json()
    )


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (
            "strategy.fsat=3",
            "--set strategy.fsat=3: unknown key `fsat` in [strategy]; did you mean `fast`?",
        ),
        (
            "stratgy.fast=3",
            "--set stratgy.fast=3: unknown key `stratgy` in the top level; "
            "did you mean `strategy`?",
        ),
        ("sizing.fraction=2", "--set sizing.fraction=2: Input should be less than or equal to 1"),
        (
            "strategy.fast=60",
            "--set strategy.fast=60: strategy.fast (60) must be < strategy.slow (50)",
        ),
        (
            "strategy.price=mid",
            "--set strategy.price=mid: Input should be 'close', 'open', 'high' or 'low'",
        ),
        (
            "strategy.fast",
            "--set 'strategy.fast': want section.key=value, e.g. --set strategy.fast=20",
        ),
        ("=3", "--set '=3': want section.key=value"),
        (
            "strategy.fast.x=1",
            "--set strategy.fast.x=1: `strategy.fast` is a value, not a section; "
            "use --set strategy.fast=VALUE",
        ),
    ],
)
def test_bad_set_names_the_set(clean_env: Path, item: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(EXAMPLE, sets=[item])
    assert str(info.value).startswith(message)


def test_env_overrides_connections(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "kafka.internal:29092")
    monkeypatch.setenv("CLICKHOUSE_DSN", "clickhouse://ch.internal:8123/db")
    cfg = load_config(EXAMPLE)
    assert cfg.kafka.bootstrap == "kafka.internal:29092"
    assert cfg.clickhouse.dsn == "clickhouse://ch.internal:8123/db"
    # the rest of the sections are untouched
    assert cfg.kafka.batch_size == Config().kafka.batch_size
    assert cfg.clickhouse.database == "cryptoflow"


def test_env_data_dir_sets_default_dsn(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = clean_env / "data here"
    monkeypatch.setenv("CRYPTOFLOW_DATA_DIR", str(data))
    cfg = load_config(EXAMPLE)
    assert cfg.clickhouse.dsn == f"chdb:///{data.resolve().as_posix().lstrip('/')}/clickhouse"


def test_dotenv_file_is_read(clean_env: Path) -> None:
    (clean_env / ".env").write_text("KAFKA_BOOTSTRAP=from-dotenv:9092\n")
    assert load_config(EXAMPLE).kafka.bootstrap == "from-dotenv:9092"


def test_env_beats_file_value(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = EXAMPLE.read_text() + '\n[kafka]\nbootstrap = "file:9092"\n\n[clickhouse]\ndsn = "f"\n'
    path = _write(clean_env, text)
    cfg = load_config(path)
    assert (cfg.kafka.bootstrap, cfg.clickhouse.dsn) == ("file:9092", "f")
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "env:9092")
    monkeypatch.setenv("CLICKHOUSE_DSN", "env-dsn")
    cfg = load_config(path)
    assert (cfg.kafka.bootstrap, cfg.clickhouse.dsn) == ("env:9092", "env-dsn")

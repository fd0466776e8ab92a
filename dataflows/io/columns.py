"""Common exports' column names, mapped onto this project's (files.COLUMNS) before anything reads
a file: a new user's OHLCV CSV says `timestamp,Open,High,Low,Close,Volume` (ccxt's
fetch_ohlcv order), freqtrade's says `date`, a trade dump `timestamp,price,quantity,side`.

Rules, chosen so that a mapping can only make a file readable, never change what it means:
- names match case-insensitively; a file that already has the canonical name keeps it, and a name
  is mapped only when exactly one alias of it is present (two candidates: left for the user);
- the kind decides the time column: with open/high/low/close it is the bar's open time, with a
  price the trade's time;
- a taker `side` column (buy|sell, ccxt's) becomes `is_buyer_maker` (a sell taker hit a buyer
  maker); a text `True`/`False` column becomes booleans, anything else in it is an error;
- no symbol column: the file's name says it (`BTCUSDT-1m.csv`, freqtrade's `BTC_USDT-1m.feather`,
  `eth-usdt_trades.parquet`): the first name part, or two joined ones, that ends in a quote
  asset; none found is an error naming the fix;
- `Volume BTC` beside `Volume USDT` (CryptoDataDownload's CSVs, which open with a banner line
  that is skipped): the base asset's is the volume;
- a column naming several markets (`market`, `exchange`, as in QuantConnect's exports) other than
  `venue` is refused: one symbol name on several exchanges is several instruments, and merging
  them into one stream would be silently wrong.
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

_OHLC = ("open", "high", "low", "close")
# In priority order: the first one present is taken (CryptoDataDownload's files hold both `unix`
# and a text `date`).
_BAR_TIME = ("timestamp", "unix", "time", "datetime", "date", "ts", "bar_start", "start_time")
_TRADE_TIME = ("timestamp", "unix", "time", "datetime", "date", "ts")
ALIASES: dict[str, dict[str, tuple[str, ...]]] = {
    "bars": {
        "open_time": _BAR_TIME,
        "volume": ("vol", "base_volume"),
    },
    "trades": {
        "trade_time": _TRADE_TIME,
        "trade_id": ("id", "tid", "tradeid"),
        "qty": ("quantity", "amount", "size"),
        "is_buyer_maker": ("buyer_maker", "isbuyermaker"),
    },
}
# Quote assets a symbol in a file name ends with (longest first: "FDUSD" before "USD").
QUOTES = ("FDUSD", "USDT", "USDC", "BUSD", "TUSD", "USD", "EUR", "TRY", "BTC", "ETH", "BNB")
_MARKET_COLUMNS = ("market", "exchange")


def kind_of(names: list[str]) -> str | None:
    low = {n.lower() for n in names}
    if set(_OHLC) <= low:
        return "bars"
    if "price" in low:
        return "trades"
    return None


def symbol_from_name(path: Path) -> str | None:
    """BTCUSDT from `BTCUSDT-1m.csv`, `BTC_USDT-1m.feather`, `binance_ethusdt_trades.parquet`."""
    parts = [p for p in re.split(r"[^A-Za-z0-9]+", path.name.split(".", 1)[0].upper()) if p]
    for i, part in enumerate(parts):
        for q in QUOTES:
            if part.endswith(q) and len(part) > len(q) and not part[: -len(q)].isdigit():
                return part
            if part == q and i > 0 and parts[i - 1].isalpha():
                return parts[i - 1] + q
    return None


def canonical(lf: pl.LazyFrame, path: Path) -> pl.LazyFrame:
    """`lf` (one file or a glob of one layout) with the canonical column names (module doc)."""
    names = lf.collect_schema().names()
    kind = kind_of(names)
    if kind is None:
        return lf  # detect_kind says what is missing
    have = set(names)
    rename: dict[str, str] = {}
    for n in names:  # case: Open -> open, Symbol -> symbol
        if n != n.lower() and n.lower() not in have and n.lower() not in rename.values():
            rename[n] = n.lower()
    lower = {rename.get(n, n): n for n in names}  # canonical-cased name -> the file's name
    for target, aliases in ALIASES[kind].items():
        if target in lower:
            continue
        found = next((a for a in aliases if a in lower), None)
        if found is not None:
            rename[lower[found]] = target
            lower[target] = lower.pop(found)
    if rename:
        lf = lf.rename(rename)
    if kind == "bars" and "volume" not in lower:
        lf = _base_volume(lf, path)
    cols = set(lf.collect_schema().names())
    for market in _MARKET_COLUMNS:
        if market in cols and "venue" not in cols:
            _one_market(lf, market, path)
    if kind == "trades":
        lf = _taker_side(lf, cols, path)
    _check_text_times(lf, path)
    if "symbol" not in cols:
        symbol = symbol_from_name(path)
        if symbol is None:
            raise ValueError(
                f"{path} has no symbol column and its name does not say one (it has: "
                f"{', '.join(sorted(cols))}): add a `symbol` column, or name the file after its "
                "symbol (BTCUSDT-1m.csv, BTC_USDT-1m.parquet)"
            )
        lf = lf.with_columns(pl.lit(symbol).alias("symbol"))
    return lf


def _base_volume(lf: pl.LazyFrame, path: Path) -> pl.LazyFrame:
    """`Volume BTC` beside `Volume USDT` (CryptoDataDownload's): the base asset's is the volume,
    the one whose asset the symbol starts with (a lone `volume <asset>` is taken as it is)."""
    found = {
        m[1].upper(): n
        for n in lf.collect_schema().names()
        if (m := re.fullmatch(r"volume[ _]+([a-z0-9]+)", n, re.IGNORECASE))
    }
    if len(found) > 1:
        names = lf.collect_schema().names()
        if "symbol" in names:
            first = lf.select(pl.col("symbol").cast(pl.String).first()).collect().item()
        else:
            first = symbol_from_name(path)
        sym = re.sub(r"[^A-Z0-9]", "", str(first or "").upper())
        found = {a: n for a, n in found.items() if sym.startswith(a) and len(sym) > len(a)}
    if len(found) != 1:
        return lf  # detect_kind names the missing `volume`
    return lf.rename({next(iter(found.values())): "volume"})


def _check_text_times(lf: pl.LazyFrame, path: Path) -> None:
    """Times as text must parse as UTC ISO times (files._ns reads them): fail quoting one."""
    schema = lf.collect_schema()
    for col in ("open_time", "trade_time", "local_ts"):
        if schema.get(col) != pl.String:
            continue
        parsed = pl.col(col).str.to_datetime(time_unit="ns", time_zone="UTC", strict=False)
        bad = lf.select(pl.col(col).filter(parsed.is_null()).head(3)).collect()[col]
        if bad.len():
            raise ValueError(
                f"{path}: column {col!r} holds text that is not a time "
                f"({', '.join(map(repr, bad.to_list()))}); write ISO times "
                "(2024-01-01T00:00:00Z) or integer epochs"
            )


def _one_market(lf: pl.LazyFrame, column: str, path: Path) -> None:
    markets = lf.select(pl.col(column).cast(pl.String).unique().sort()).collect()[column]
    if markets.len() > 1:
        raise ValueError(
            f"{path} holds several markets in column {column!r} ({', '.join(map(str, markets))}): "
            "a symbol on two exchanges is two instruments; filter the file to one market "
            f"(or rename {column!r} to `venue` and set the config's `venue` to the one to replay)"
        )


def _taker_side(lf: pl.LazyFrame, cols: set[str], path: Path) -> pl.LazyFrame:
    """`side` (the taker's) -> is_buyer_maker; text True/False -> booleans (checked)."""
    schema = lf.collect_schema()
    if "is_buyer_maker" not in cols and "side" in cols:
        src, true, false = "side", "sell", "buy"
    elif "is_buyer_maker" in cols and schema["is_buyer_maker"] == pl.String:
        src, true, false = "is_buyer_maker", "true", "false"
    else:
        return lf
    text = pl.col(src).cast(pl.String).str.to_lowercase()
    bad = lf.select(text.filter(~text.is_in([true, false])).unique().head(3)).collect()[src]
    if bad.len():
        raise ValueError(
            f"{path}: column {src!r} must be {true!r} or {false!r}, it holds "
            f"{', '.join(map(repr, bad.to_list()))}"
        )
    return lf.with_columns((text == true).alias("is_buyer_maker"))

"""Read the shared market-data file formats (parquet or CSV; see ../shared/data/README.md) into
wire messages, and replay them as a Bytewax source with one partition per symbol.

Bar files: symbol, open_time (UTC; a datetime, or an integer epoch in s, ms, us or ns, the
unit told by each value's magnitude), open, high, low, close, volume. A file does not say how long
its bars are: the config's bar interval does (`[bars] interval_s`), and a file whose bars are
spaced otherwise is refused (`check_bar_interval`) rather than read as bars of another length.
Trade files: symbol, trade_time (exchange, UTC), trade_id, price, qty, is_buyer_maker,
optionally venue and local_ts (recorder clock: used as ts_init, when we saw the trade). A
symbol's name is unique per venue only (Binance spot and USD-M futures both list BTCUSDT): trades
are read for one venue, the config's, and keep it on the wire.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import polars as pl
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from dataflows.io import columns, vision
from dataflows.io.pacing import Pace, check_speed
from schemas.messages import NS_PER_MINUTE, Bar, Trade

Kind = Literal["trades", "bars"]
DEFAULT_VENUE = "binance_spot"  # the config's default `venue`


def scan(path: str | Path) -> pl.LazyFrame:
    """A parquet or CSV file, or Binance's own data files as downloaded (`.zip`/`.csv` named
    BTCUSDT-1m-2024-01, see io/vision.py); a glob ("bars_1m/*_1m_202*.parquet",
    "BTCUSDT-1m-2024-*.zip") reads several of one kind as one frame. Common exports' column
    names (`timestamp`, `Open`, `quantity`, `side`, a symbol in the file name) are mapped onto
    this project's (io/columns.py)."""
    p = Path(path)
    if any(ch in str(path) for ch in "*?["):
        return _scan_glob(p)
    if not p.exists():
        raise FileNotFoundError(f"no such file: {p}")
    if vision.is_vision(p):
        return vision.read_vision(p)
    if p.suffix == ".parquet":
        lf = pl.scan_parquet(p)
    elif p.suffix in (".csv", ".gz") or p.name.endswith(".csv.gz"):
        lf = pl.scan_csv(p, try_parse_dates=True)
        names = lf.collect_schema().names()
        if len(names) == 1 and names[0].lower().startswith(("http", "www.")):  # a banner line
            lf = pl.scan_csv(p, try_parse_dates=True, skip_rows=1)  # (CryptoDataDownload's)
        lf = _headed(p, lf)
    elif p.suffix == ".zip":
        lf = _headed(p, vision.read_zip_csv(p))
    elif p.suffix in (".feather", ".arrow", ".ipc"):  # freqtrade's default data format
        lf = pl.scan_ipc(p)
    else:
        raise ValueError(
            f"unsupported file type {p.suffix!r} (want .parquet, .csv, .zip or .feather)"
        )
    return columns.canonical(lf, p)


def _scan_glob(p: Path) -> pl.LazyFrame:
    files = sorted(p.parent.glob(p.name))
    if not files:
        raise FileNotFoundError(f"no files match {p}")
    if p.suffix == ".parquet":
        lf = pl.scan_parquet(str(p))
        if any(n.lower() == "symbol" for n in lf.collect_schema().names()):
            return columns.canonical(lf, p)
        # without a symbol column, each file's name says its symbol: read them one by one
    elif p.suffix not in (".csv", ".zip", ".gz", ".feather", ".arrow", ".ipc"):
        raise ValueError(f"globs are supported for parquet, csv, zip and feather files: {p}")
    frames = [scan(f) for f in files]
    widths = {tuple(f.collect_schema().names()) for f in frames}
    if len(widths) > 1:
        raise ValueError(f"the files matching {p} differ in their columns: {widths}")
    return pl.concat(frames, how="vertical_relaxed")


def _headed(path: Path, lf: pl.LazyFrame) -> pl.LazyFrame:
    """A CSV whose "header" is numbers is data without one (Binance's spot files, renamed):
    said, rather than reported as a file lacking every column."""
    names = lf.collect_schema().names()
    for n in names:  # polars renames repeated header names "x_duplicated_0", ...
        value = n.split("_duplicated_", 1)[0]
        if value.lower() in ("true", "false"):
            continue
        try:
            float(value)
        except ValueError:
            return lf
    raise ValueError(
        f"{path} has no header row (its first line is data: {', '.join(names[:6])}, ...); a "
        "Binance download keeps its name (BTCUSDT-1m-2024-01.zip, BTCUSDT-trades-2024-08-08.zip)"
        " so its columns and symbol can be read; or add a header (bars: "
        f"{', '.join(COLUMNS['bars'])}; trades: {', '.join(COLUMNS['trades'])})"
    )


# The columns each kind needs (CSV/parquet header names); see the module docstring.
COLUMNS: dict[Kind, tuple[str, ...]] = {
    "bars": ("symbol", "open_time", "open", "high", "low", "close", "volume"),
    "trades": ("symbol", "trade_time", "trade_id", "price", "qty", "is_buyer_maker"),
}


def _missing(kind: Kind, names: list[str]) -> list[str]:
    return [c for c in COLUMNS[kind] if c not in names]


def _columns_error(kind: Kind, names: list[str]) -> ValueError:
    missing = _missing(kind, names)
    return ValueError(
        f"a {kind} file needs column{'s' if len(missing) > 1 else ''} "
        f"{', '.join(missing)}, which it lacks; it has: {', '.join(names) or 'no columns'} "
        f"(all {kind} columns: {', '.join(COLUMNS[kind])})"
    )


def detect_kind(lf: pl.LazyFrame) -> Kind:
    names = lf.collect_schema().names()
    cols = set(names)
    if {"open_time", "open", "high", "low", "close", "volume"} <= cols:
        return "bars"
    if {"trade_time", "trade_id", "price", "qty"} <= cols:
        return "trades"
    # Neither: say what the closer kind lacks.
    nearest: Kind = (
        "bars" if len(_missing("bars", names)) <= len(_missing("trades", names)) else "trades"
    )
    raise ValueError(f"not a bar or trade file: {_columns_error(nearest, names)}")


def _ns(col: str, dtype: pl.DataType) -> pl.Expr:
    """A time column as int ns UTC. Integer epochs carry no unit: each value's magnitude gives
    it (seconds < 1e11 <= milliseconds < 1e14 <= microseconds < 1e17 <= nanoseconds, which is
    unambiguous for 1973-5138), per row, because Binance's own kline files switched from ms to
    us in 2025 and a glob may span both; read as ms, seconds would land in 1970 without a
    word and microseconds overflow."""
    if isinstance(dtype, pl.Datetime):
        return pl.col(col).dt.epoch("ns")
    if dtype == pl.String:  # text the CSV reader did not take for dates ("+00:00" offsets, ...)
        return pl.col(col).str.to_datetime(time_unit="ns", time_zone="UTC").dt.epoch("ns")
    c = pl.col(col).cast(pl.Int64)
    return (
        pl.when(c < 10**11)
        .then(c * 1_000_000_000)
        .when(c < 10**14)
        .then(c * 1_000_000)
        .when(c < 10**17)
        .then(c * 1_000)
        .otherwise(c)
    )


def normalized(
    lf: pl.LazyFrame,
    kind: Kind,
    symbols: list[str] | None = None,
    start_ns: int | None = None,
    end_ns: int | None = None,
    venue: str | None = DEFAULT_VENUE,
    interval_ns: int = NS_PER_MINUTE,
) -> pl.LazyFrame:
    """Columns in wire-message order, filtered to [start, end) and symbols, sorted by time
    (bars: known at their close, `interval_ns` after the open)."""
    schema = lf.collect_schema()
    if _missing(kind, schema.names()):
        raise _columns_error(kind, schema.names())
    # Exchange ids as the config names them: "btcusdt" and ccxt's "BTC/USDT" (or "BTC-USDT")
    # are BTCUSDT; a derivative's "BTC/USDT:USDT" stays as it is (and is refused by name).
    sym = pl.col("symbol").cast(pl.String).str.to_uppercase()
    spot = ~sym.str.contains(":", literal=True)
    lf = lf.with_columns(
        pl.when(spot).then(sym.str.replace_all(r"[/_-]", "")).otherwise(sym).alias("symbol")
    )
    # A file with a venue column holds several venues' data under the same names: keep
    # `venue`'s rows (every venue's when None). A file without one is `venue`'s tape.
    has_venue = "venue" in schema.names()
    if has_venue:
        lf = lf.with_columns(pl.col("venue").cast(pl.String))
        if venue:
            lf = lf.filter(pl.col("venue") == venue)
    if kind == "bars":
        lf = lf.select(
            "symbol",
            _ns("open_time", schema["open_time"]).alias("ts_event"),
            pl.col("open", "high", "low", "close", "volume").cast(pl.Float64),
            *(["venue"] if has_venue else []),
        ).with_columns((pl.col("ts_event") + interval_ns).alias("ts_init"))
        order = ["symbol", "ts_event"]
    else:
        if not has_venue:
            lf = lf.with_columns(pl.lit(venue or DEFAULT_VENUE).alias("venue"))
        ts_init = _ns("local_ts", schema["local_ts"]) if "local_ts" in schema.names() else None
        lf = lf.select(
            "symbol",
            _ns("trade_time", schema["trade_time"]).alias("ts_event"),
            pl.col("trade_id").cast(pl.Int64),
            pl.col("price", "qty").cast(pl.Float64),
            pl.col("is_buyer_maker").cast(pl.Boolean),
            *([ts_init.alias("ts_init")] if ts_init is not None else []),
            "venue",
        )
        if ts_init is None:
            lf = lf.with_columns(pl.col("ts_event").alias("ts_init"))
        order = ["symbol", "ts_event", "trade_id"]
    if symbols:
        lf = lf.filter(pl.col("symbol").is_in([s.upper() for s in symbols]))
    if start_ns is not None:
        lf = lf.filter(pl.col("ts_event") >= start_ns)
    if end_ns is not None:
        lf = lf.filter(pl.col("ts_event") < end_ns)
    return lf.sort(order)


def check_bar_interval(lf: pl.LazyFrame, interval_ns: int, source: str) -> None:
    """Bars from `normalized`: ValueError unless each symbol's most common spacing (its bar
    length; one odd bar does not move it, and is dead-lettered off the grid) is `interval_ns`."""
    steps = (
        lf.select("symbol", "ts_event")
        .sort("symbol", "ts_event")
        .with_columns(step=pl.col("ts_event").diff().over("symbol"))
        .filter(pl.col("step") > 0)
        .group_by("symbol")
        .agg(pl.col("step").mode().min())
        .sort("symbol")
        .collect()
    )
    bad = [(str(s), int(d)) for s, d in steps.iter_rows() if d != interval_ns]
    if bad:
        step = bad[0][1]
        got = ", ".join(f"{s}: {d / 1e9:g} s" for s, d in bad)
        secs, frac = divmod(step, 1_000_000_000)
        fix = (
            f"set bars.interval_s = {secs} in the config (or --set bars.interval_s={secs}); "
            "strategy and feature windows count bars"
            if not frac
            else "bars.interval_s takes whole seconds: resample the file to a whole-second bar"
        )
        raise ValueError(
            f"{source} holds bars {step / 1e9:g} s apart ({got}) but the bar interval is "
            f"{interval_ns / 1e9:g} s ([bars] interval_s): {fix}"
        )


def to_messages(df: pl.DataFrame, kind: Kind, interval_ns: int = NS_PER_MINUTE) -> list[Any]:
    """DataFrame from `normalized` -> list of Bar/Trade (positional construction: fast)."""
    if kind == "bars":
        cols = [df[c].to_list() for c in ("symbol", "ts_event", "ts_init")]
        cols += [df[c].to_list() for c in ("open", "high", "low", "close", "volume")]
        if interval_ns == NS_PER_MINUTE:  # the default: ~80 ns a bar less than passing it
            return [Bar(*row) for row in zip(*cols, strict=True)]
        return [Bar(*row, interval_ns) for row in zip(*cols, strict=True)]
    sym, ts, ts_init, tid = (df[c].to_list() for c in ("symbol", "ts_event", "ts_init", "trade_id"))
    price, qty, bm = (df[c].to_list() for c in ("price", "qty", "is_buyer_maker"))
    venues = df["venue"].to_list() if "venue" in df.columns else [DEFAULT_VENUE] * df.height
    return [
        Trade(s, t, i, d, p, q, "sell" if m else "buy", v)
        for s, t, i, d, p, q, m, v in zip(
            sym, ts, ts_init, tid, price, qty, bm, venues, strict=True
        )
    ]


def venue_clashes(lf: pl.LazyFrame) -> dict[str, list[str]]:
    """Trades or bars from `normalized` with every venue kept -> {symbol: its venues} for each
    symbol the file holds on more than one venue (Binance spot and USD-M futures both name
    BTCUSDT): one stream of such a symbol would merge two instruments' data."""
    if "venue" not in lf.collect_schema().names():
        return {}
    df = (
        lf.group_by("symbol")
        .agg(pl.col("venue").unique().sort())
        .filter(pl.col("venue").list.len() > 1)
        .sort("symbol")
        .collect()
    )
    return {str(r["symbol"]): list(r["venue"]) for r in df.iter_rows(named=True)}


class _Partition(StatefulSourcePartition[list[Any], int]):
    def __init__(
        self,
        lf: pl.LazyFrame,
        kind: Kind,
        batch_size: int,
        resume: int | None,
        pace: Pace | None,
        interval_ns: int,
    ) -> None:
        self._df = lf.collect()
        self._kind = kind
        self._interval = interval_ns
        self._batch = batch_size
        self._pos = resume or 0
        self._pace = pace
        self._ts = self._df["ts_event"].to_numpy()
        self._awake: datetime | None = None

    def next_batch(self) -> list[list[Any]]:
        if self._pos >= self._df.height:
            raise StopIteration
        end = min(self._pos + self._batch, self._df.height)
        if self._pace is not None:
            due = self._pace.due(self._ts[self._pos : end])
            if due == 0:
                self._awake = self._pace.wake_at(int(self._ts[self._pos]))
                return []
            end = self._pos + due
            self._awake = None
        out = to_messages(self._df.slice(self._pos, end - self._pos), self._kind, self._interval)
        self._pos = end
        return [out]

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> int:
        return self._pos


class FileSource(FixedPartitionedSource[list[Any], int]):
    """Replays a bar or trade file; one partition per symbol keeps each symbol's order."""

    def __init__(
        self,
        path: str | Path,
        symbols: list[str] | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
        kind: Kind | None = None,
        batch_size: int = 10_000,
        speed: float | None = None,
        interval_ns: int = NS_PER_MINUTE,
        venue: str = DEFAULT_VENUE,
    ) -> None:
        """`interval_ns`: the bars' length (the config's `[bars] interval_s`); a bar file
        spaced otherwise is a ValueError here, before anything runs. `venue`: a trade file's
        rows of that venue only (the config's `venue`)."""
        self.path = Path(path)
        lf = scan(self.path)
        self.kind: Kind = kind or detect_kind(lf)
        self.interval_ns = interval_ns
        self._lf = normalized(
            lf, self.kind, symbols, start_ns, end_ns, venue, interval_ns=interval_ns
        )
        if self.kind == "bars":
            check_bar_interval(self._lf, interval_ns, f"file:{path}")
        # `normalized` already kept only the requested symbols
        self.symbols = self._lf.select(pl.col("symbol").unique().sort()).collect()["symbol"]
        self.batch_size = batch_size
        check_speed(speed)
        self.speed = speed
        self._origin = start_ns
        if speed is not None and start_ns is None:
            first = self._lf.select(pl.col("ts_event").min()).collect().item()
            self._origin = int(first or 0)

    def list_parts(self) -> list[str]:
        return self.symbols.to_list()

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _Partition:
        lf = self._lf.filter(pl.col("symbol") == for_part)
        # Each partition paces from the same origin, so symbols stay aligned in event time.
        pace = Pace(self.speed, self._origin or 0) if self.speed is not None else None
        return _Partition(lf, self.kind, self.batch_size, resume_state, pace, self.interval_ns)

"""Binance's public data files (data.binance.vision) as they are downloaded: `.zip` or `.csv`,
named `<SYMBOL>-<interval>-<date>` (klines), `<SYMBOL>-trades-<date>` or
`<SYMBOL>-aggTrades-<date>`, with no symbol column and, for spot, no header row.

The columns are taken by position (Binance's documented order), so a header row, where the
futures files have one, only has to be skipped; the symbol comes from the file name, and the venue
from the folder layout Binance publishes under (`.../futures/um/...`, `.../futures/cm/...`;
anything else is the config's venue). Times stay integers: `files._ns` gives each its unit from
its magnitude (spot files switched from milliseconds to microseconds in 2025). An aggTrades row
is one aggregate (the trades of one taker order at one price): bars' volumes and prices are
those of the trades, but trade counts and trade-size features count aggregates.
"""

from __future__ import annotations

import functools
import io
import itertools
import re
import zipfile
import zlib
from pathlib import Path

import polars as pl

NAME = re.compile(
    r"^(?P<symbol>[A-Z0-9]+)-(?P<what>trades|aggTrades|\d+(?:s|m|h|d|w|mo))-"
    r"(?P<date>\d{4}-\d{2}(?:-\d{2})?)\.(?:csv|zip)$"
)

# By position, per number of columns in the file.
KLINES = {
    12: (
        "open_time",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "close_time",
        "quote_volume",
        "count",
        "taker_buy_volume",
        "taker_buy_quote_volume",
        "ignore",
    )
}
_TRADES = ("trade_id", "price", "qty", "quote_qty", "trade_time", "is_buyer_maker")
TRADES = {7: (*_TRADES, "is_best_match"), 6: _TRADES}  # spot, futures
_AGG = ("trade_id", "price", "qty", "first_trade_id", "last_trade_id", "trade_time")
AGG_TRADES = {8: (*_AGG, "is_buyer_maker", "is_best_match"), 7: (*_AGG, "is_buyer_maker")}
# Binance publishes these under the same file names as klines; they are not traded prices.
NOT_TRADED = {"markpriceklines", "indexpriceklines", "premiumindexklines"}
VENUES = {("futures", "um"): "binance_usdm_futures", ("futures", "cm"): "binance_coinm_futures"}


def is_vision(path: str | Path) -> bool:
    return NAME.match(Path(path).name) is not None


def csv_bytes(path: Path) -> bytes:
    """The CSV inside a one-file zip (Binance's packaging), or the file itself."""
    if path.suffix != ".zip":
        return path.read_bytes()
    try:
        with zipfile.ZipFile(path) as z:
            members = [n for n in z.namelist() if not n.endswith("/")]
            if len(members) != 1 or not members[0].endswith(".csv"):
                raise ValueError(
                    f"{path}: a zip source must hold one .csv file, it holds {members}"
                )
            return z.read(members[0])
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:  # truncated or corrupt download
        raise ValueError(
            f"{path} is not a readable zip ({exc}): download it again (Binance publishes a "
            ".CHECKSUM file beside each one)"
        ) from exc


def venue_of(parts: list[str]) -> str | None:
    """The venue of Binance's folder layout (`parts`: the path's lower-cased parts)."""
    for (a, b), venue in VENUES.items():
        if any(x == a and y == b for x, y in itertools.pairwise(parts)):
            return venue
    return None


def _identity(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path.resolve()), st.st_mtime_ns, st.st_size


def read_vision(path: Path) -> pl.LazyFrame:
    """One Binance data file -> a frame with this project's file columns (see files.COLUMNS).
    A command opens its source several times (inventory, range check, replay): the file is
    decompressed and parsed once per process, and again only if it changes."""
    return _read_vision(*_identity(path)).lazy()


def read_zip_csv(path: Path) -> pl.LazyFrame:
    """A one-CSV zip with a header row (this project's columns), parsed once per process."""
    return _read_zip_csv(*_identity(path)).lazy()


@functools.cache
def _read_zip_csv(resolved: str, _mtime_ns: int, _size: int) -> pl.DataFrame:
    return pl.read_csv(csv_bytes(Path(resolved)), try_parse_dates=True)


@functools.cache
def _read_vision(resolved: str, _mtime_ns: int, _size: int) -> pl.DataFrame:
    path = Path(resolved)
    m = NAME.match(path.name)
    if m is None:
        raise ValueError(f"{path.name} is not a Binance data file name (SYMBOL-1m-2024-01.zip)")
    what = m["what"]
    parts = [p.lower() for p in path.parts]
    folder = next((p for p in path.parts if p.lower() in NOT_TRADED), None)
    if folder is not None:
        raise ValueError(
            f"{path} is from Binance's {folder} folder: mark, index and premium prices are not "
            "traded prices, and their volumes are not volumes; use the klines or trades files"
        )
    layouts = TRADES if what == "trades" else AGG_TRADES if what == "aggTrades" else KLINES
    data = csv_bytes(path)
    first = data.split(b"\n", 1)[0].strip()
    header = bool(first) and first[:1].isalpha()
    width = len(first.split(b",")) if first else 0
    names = layouts.get(width)
    if names is None:
        want = " or ".join(str(n) for n in sorted(layouts))
        raise ValueError(
            f"{path}: a Binance {what} file has {want} columns, this one has {width} "
            f"(first line: {first[:120].decode(errors='replace')!r})"
        )
    df = pl.read_csv(
        io.BytesIO(data),
        has_header=header,
        new_columns=list(names),
        schema_overrides={n: pl.Int64 for n in names if n.endswith(("_time", "_id"))},
    )
    if "is_buyer_maker" in df.columns and df.schema["is_buyer_maker"] != pl.Boolean:
        flag = df["is_buyer_maker"].cast(pl.String).str.to_lowercase()
        odd = flag.filter(~flag.is_in(["true", "false"]) | flag.is_null())
        if len(odd):
            raise ValueError(
                f"{path}: is_buyer_maker must be true or false; {len(odd)} rows are not "
                f"(e.g. {odd[0]!r})"
            )
        df = df.with_columns(is_buyer_maker=flag == "true")
    df = df.with_columns(symbol=pl.lit(m["symbol"]))
    venue = venue_of(parts)
    if venue is not None:
        df = df.with_columns(venue=pl.lit(venue))
    return df

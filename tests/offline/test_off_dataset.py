"""`cryptoflow offline dataset` end to end on the shipped real bars (Jan 2024, 1m), no mocks:
features equal a FeatureSet fed the same bars directly, labels equal `compute_labels`, the
ClickHouse `features` table mirrors the parquet, reruns replace their own rows, bad requests fail
before any work, and a truncated replay's features are a prefix of the full one (no lookahead).
The file's conventions: Datetime(ns, UTC) times, null (never NaN) for missing values, a `warmup`
flag, and trade-flow columns left out (with a note) when the bars were not built from trades."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

from dataflows.backtest import parse_time
from dataflows.cli import main
from dataflows.ingest import ingest_file
from dataflows.io.parquet import rows_schema
from infra.clickhouse import connect, count_final, query_df
from offline.dataset import (
    METADATA_KEY,
    TRADE_FLOW_FAMILIES,
    DatasetSpec,
    build_dataset,
    dataset_id_for,
    read_metadata,
)
from offline.labels import compute_labels, parse_label
from offline.splits import walk_forward
from operators.features import FeatureSet, feature_set
from operators.features.registry import output_columns
from schemas.config import Config, load_config
from schemas.messages import NS_PER_MINUTE, Bar
from tests.operators.opdata import SYMBOLS, real_bars
from tests.paths import BARS_2024_01

SET = "pairs"  # a declared set with a pair feature (reference BTCUSDT)
SPECS = ["log_returns_1", "rsi_14", "corr_btcusdt_60", "ewma_vol_20"]
LABELS = (
    "forward:h=1,5",
    "triple_barrier:pt=2,sl=2,h=30,vol=ewma_vol_20",
    "threshold:h=10,thr=0.002",
)
START, END = "2024-01-01", "2024-01-08"
BARS_PER_SYMBOL = 7 * 1440
SOURCE = f"file:{BARS_2024_01}"
BAR_COLS = ("ts_event", "ts_init", "open", "high", "low", "close", "volume")
UTC_NS = pl.Datetime("ns", "UTC")
BAR_NAMES = [f.name for f in rows_schema([])]
SPECS_COLUMNS = ["log_returns_1", "rsi_14", "corr_btcusdt_60", "ewma_vol_20"]  # SET's columns


@pytest.fixture(autouse=True)
def _session_clickhouse(ch_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process runs must use the session's chDB path (one path per process)."""
    monkeypatch.setenv("CLICKHOUSE_DSN", ch_dsn)


@pytest.fixture
def config_file(tmp_path: Path, ch_db: str) -> Path:
    p = tmp_path / "dataset.toml"
    specs = ", ".join(f'"{s}"' for s in SPECS)
    p.write_text(
        f'[features]\nset = "{SET}"\n\n[feature_sets]\n{SET} = [{specs}]\n\n'
        f'[clickhouse]\ndatabase = "{ch_db}"\n'
    )
    return p


def _cfg(ch_dsn: str, ch_db: str) -> Config:
    return load_config(clickhouse={"dsn": ch_dsn, "database": ch_db}, feature_sets={SET: SPECS})


def _spec(out: Path, start: str | int = START, end: str | int = END, **kw: object) -> DatasetSpec:
    s = start if isinstance(start, int) else parse_time(start)
    e = end if isinstance(end, int) else parse_time(end)
    return DatasetSpec(SOURCE, SYMBOLS, SET, kw.pop("labels", LABELS), out, s, e, **kw)  # type: ignore[arg-type]


def _bars(start_ns: int, end_ns: int) -> dict[str, list[Bar]]:
    return {s: [b for b in real_bars(s) if start_ns <= b.ts_event < end_ns] for s in SYMBOLS}


def reference_features(fs: FeatureSet, bars: dict[str, list[Bar]]) -> dict[str, np.ndarray]:
    """One fresh set per symbol fed its bars in open-time order, every symbol's bar at the same
    open time passed as the references (ETH's corr_btcusdt_60 sees BTC's bar of that minute)."""
    by_ts: dict[int, dict[str, Bar]] = {}
    for bs in bars.values():
        for b in bs:
            by_ts.setdefault(b.ts_event, {})[b.symbol] = b
    sets = {s: fs.fresh() for s in bars}
    out: dict[str, list[tuple[float, ...]]] = {s: [] for s in bars}
    for ts in sorted(by_ts):
        at_t = by_ts[ts]
        for s in sorted(at_t):
            out[s].append(sets[s].update(at_t[s], at_t))
    return {s: np.array(v, dtype=np.float64) for s, v in out.items()}


def _per_symbol(frame: pl.DataFrame, symbol: str) -> pl.DataFrame:
    return frame.filter(pl.col("symbol") == symbol)


def _int_times(frame: pl.DataFrame) -> pl.DataFrame:
    """The file's Datetime(ns, UTC) columns as the wire's int ns."""
    return frame.with_columns(pl.col(UTC_NS).dt.epoch("ns"))


# --------------------------------------------------------------------------- 1. the dataset


def test_dataset_features_labels_and_clickhouse_match_references(
    config_file: Path, ch_dsn: str, ch_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "data" / "ds.parquet"
    label_args = [a for lab in LABELS for a in ("--label", lab)]
    argv = ["offline", "dataset", "--source", SOURCE, "--start", START, "--end", END]
    argv += ["--symbols", "btcusdt,ETHUSDT", "--config", str(config_file), "--out", str(out)]
    assert main([*argv, *label_args, "--no-progress"]) == 0
    stdout = capsys.readouterr().out

    cfg = _cfg(ch_dsn, ch_db)
    fs = feature_set(SET, cfg.feature_sets)
    assert fs.refs == {"BTCUSDT"}
    dsid = dataset_id_for(_spec(out), fs, [parse_label(x) for x in LABELS], cfg)
    assert dsid in stdout
    frame = pl.read_parquet(out)
    assert list(frame.columns[10 : 10 + len(fs.columns)]) == fs.columns
    assert frame.height == 2 * BARS_PER_SYMBOL
    assert frame["symbol"].to_list() == [s for s in SYMBOLS for _ in range(BARS_PER_SYMBOL)]
    # Sidecar columns name the feature set.
    assert frame.select("feature_set", "feature_version").unique().rows() == [(SET, fs.version)]

    start_ns, end_ns = parse_time(START), parse_time(END)
    assert start_ns is not None and end_ns is not None
    bars = _bars(start_ns, end_ns)
    ref = reference_features(fs, bars)
    label_cols = [c for lab in LABELS for c in parse_label(lab).columns]
    for sym in SYMBOLS:
        part = _per_symbol(frame, sym)
        # One row per input bar, in order, the bar itself carried through unchanged.
        assert part.height == len(bars[sym]) == BARS_PER_SYMBOL
        ints = _int_times(part)
        for c in BAR_COLS:
            assert ints[c].to_list() == [getattr(b, c) for b in bars[sym]], (sym, c)
        # Features bit for bit the operators' own output: null in the file where it is NaN.
        for c in fs.columns:
            assert part[c].null_count() == int(np.isnan(ref[sym][:, fs.columns.index(c)]).sum())
        got = part.select(fs.columns).to_numpy()  # null -> NaN
        np.testing.assert_array_equal(got, ref[sym], err_msg=sym)
        # After warm-up everything is finite, except the reference's pair feature on itself.
        finite = np.isfinite(got[fs.warmup :]).all(axis=0)
        assert finite.tolist() == [sym != "BTCUSDT" or c != "corr_btcusdt_60" for c in fs.columns]
        # Labels equal compute_labels on the parquet's own bar (and feature) columns, their end
        # times as datetimes.
        expect = compute_labels(LABELS, ints.select(*BAR_COLS, "ewma_vol_20"))
        expect = expect.with_columns(pl.col("^.*_end_ts$").cast(UTC_NS))
        assert_frame_equal(part.select(label_cols), expect, check_exact=True)
        assert part["fwd_ret_1"].null_count() == 1  # the last bar has no next close
        lab = part["tb_2_2_30_ewma_vol_20_label"].drop_nulls()
        assert set(lab.unique().to_list()) == {-1, 0, 1}

    # ClickHouse: one `features` row per bar (FINAL) whose values equal the parquet's.
    client = connect(ch_dsn, ch_db)
    runs = query_df(client, f"SELECT DISTINCT run_id FROM {ch_db}.features")["run_id"]
    assert runs.to_list() == [dsid]
    assert count_final(client, ch_db, "features", dsid) == 2 * BARS_PER_SYMBOL
    rows = query_df(
        client,
        f"SELECT symbol, ts_event, ts_init, feature_set, version, values FROM {ch_db}.features "
        "FINAL WHERE run_id = %(r)s ORDER BY symbol, ts_event",
        {"r": dsid},
    )
    assert_frame_equal(
        _int_times(rows.select("symbol", "ts_event", "ts_init")),
        _int_times(frame.select("symbol", "ts_event", "ts_init")),
    )
    assert rows.select("feature_set", "version").unique().rows() == [(SET, fs.version)]
    stored = np.array(rows["values"].to_list(), dtype=np.float64)
    np.testing.assert_array_equal(stored, frame.select(fs.columns).to_numpy())
    sets = query_df(
        client,
        f"SELECT version, feature_set, columns, specs FROM {ch_db}.feature_sets FINAL "
        "WHERE run_id = %(r)s",
        {"r": dsid},
    )
    assert sets.rows() == [(fs.version, SET, fs.columns, fs.spec_texts())]


# --------------------------------------------------------------------------- 2. rerun


def test_rerun_keeps_the_id_and_replaces_its_own_rows(
    ch_dsn: str, ch_db: str, tmp_path: Path
) -> None:
    cfg = _cfg(ch_dsn, ch_db)
    out = tmp_path / "ds.parquet"
    first = build_dataset(cfg, _spec(out), progress=False)
    before = pl.read_parquet(out)
    client = connect(ch_dsn, ch_db)
    counts = {
        t: count_final(client, ch_db, t, first.dataset_id) for t in ("features", "feature_sets")
    }
    assert counts == {"features": 2 * BARS_PER_SYMBOL, "feature_sets": 1}

    again = build_dataset(cfg, _spec(out), progress=False)  # same inputs, same output path
    assert again.dataset_id == first.dataset_id
    assert again.rows_by_symbol == first.rows_by_symbol == dict.fromkeys(SYMBOLS, BARS_PER_SYMBOL)
    assert_frame_equal(pl.read_parquet(out), before, check_exact=True)
    assert {t: count_final(client, ch_db, t, first.dataset_id) for t in counts} == counts
    assert not list(tmp_path.glob(".rows-*")) and not list(tmp_path.glob("*.partial"))

    # A different request is a different dataset id, stored beside the first.
    other = build_dataset(cfg, _spec(tmp_path / "b.parquet", labels=()), progress=False)
    assert other.dataset_id != first.dataset_id
    assert count_final(client, ch_db, "features", first.dataset_id) == 2 * BARS_PER_SYMBOL


@pytest.mark.parametrize("fset", [SET, "tcn12"])
def test_worker_count_does_not_change_the_dataset(
    fset: str, ch_dsn: str, ch_db: str, tmp_path: Path
) -> None:
    """Pair sets run as one group; others are keyed by symbol and spread over the workers."""
    cfg = _cfg(ch_dsn, ch_db)
    frames = []
    for workers in (1, 3):
        spec = DatasetSpec(
            SOURCE,
            SYMBOLS,
            fset,
            ("forward:h=1",),
            tmp_path / f"w{workers}.parquet",
            parse_time("2024-01-10"),
            parse_time("2024-01-11"),
            workers=workers,
            store=False,
        )
        frames.append(pl.read_parquet(build_dataset(cfg, spec, progress=False).path))
    assert frames[0].height == 2 * 1440
    assert_frame_equal(frames[1], frames[0], check_exact=True)


# --------------------------------------------------------------------------- 3. errors


def _stored_feature_rows(ch_dsn: str, ch_db: str) -> int:
    client = connect(ch_dsn, ch_db)
    tables = set(query_df(client, f"SHOW TABLES FROM {ch_db}")["name"].to_list())
    if "features" not in tables:
        return 0
    return int(client.command(f"SELECT count() FROM {ch_db}.features"))


@pytest.mark.parametrize(
    ("extra", "message", "early"),
    [
        (["--feature-set", "nope"], "unknown feature set 'nope'", True),
        (["--label", "forward:h=0"], "want an int >= 1", True),
        (["--label", "sideways:h=5"], "unknown label family 'sideways'", True),
        (
            ["--label", "triple_barrier:pt=2,sl=2,h=30,vol=atr_14"],
            "['atr_14'] not in 'pairs'",
            True,
        ),
        (["--out", "{dir}/ds.csv"], "--out must be a .parquet file", True),
        (["--source", "s3:bucket/x"], "kafka:<topic> or file:<path>", True),
        (["--source", "file:/nonexistent/bars.parquet"], "no such file", False),
        (["--symbols", "ETHUSDT"], "needs reference symbol(s) ['BTCUSDT']", False),
        (["--symbols", "BTCUSDT,ETHUSDT,SOLUSDT"], "not in the config's universe", False),
        (
            ["--start", "2025-01-01", "--end", "2025-01-02"],
            "no rows to build a dataset from for BTCUSDT, ETHUSDT between --start 2025-01-01 "
            "00:00:00 and --end 2025-01-02 00:00:00 UTC; file:",
            True,
        ),
    ],
    ids=[
        "unknown-set",
        "bad-label",
        "unknown-label-family",
        "label-vol-not-in-set",
        "out-not-parquet",
        "bad-source",
        "missing-file",
        "missing-reference-symbol",
        "symbol-outside-universe",
        "empty-range",
    ],
)
def test_bad_requests_fail_cleanly_with_exit_code_2(
    extra: list[str],
    message: str,
    early: bool,
    config_file: Path,
    ch_dsn: str,
    ch_db: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    outdir = tmp_path / "out"
    args = {"--source": SOURCE, "--start": START, "--end": "2024-01-02"}
    args |= {"--out": str(outdir / "ds.parquet"), "--config": str(config_file)}
    args |= {"--symbols": "BTCUSDT,ETHUSDT"}
    labels = ["--label", "forward:h=1"]
    for k, v in zip(extra[::2], extra[1::2], strict=True):
        if k == "--label":
            labels = [k, v]
        else:
            args[k] = v.replace("{dir}", str(outdir))
    argv = ["offline", "dataset", *(x for kv in args.items() for x in kv), *labels]
    assert main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in " ".join(err.split()), err  # rich may wrap long messages
    # Nothing half-written: no dataset, no temporary rows, no feature rows stored.
    if early:  # rejected before any work: not even the output directory was created
        assert not outdir.exists()
    else:
        assert not outdir.exists() or list(outdir.iterdir()) == []
    assert _stored_feature_rows(ch_dsn, ch_db) == 0


# --------------------------------------------------------------------------- 4. no lookahead


def test_a_file_without_one_of_the_configs_symbols_builds_the_others_and_says_so(
    ch_dsn: str, ch_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --symbols, as a backtest does: the config's symbols the file holds, the missing
    one named; the same dataset (and id) as --symbols naming those. Asked for by name, a symbol
    the file lacks is refused."""
    eth = tmp_path / "eth.parquet"
    pl.read_parquet(BARS_2024_01).filter(pl.col("symbol") == "ETHUSDT").write_parquet(eth)
    base = ["offline", "dataset", "--source", f"file:{eth}", "--start", START, "--end", END]
    base += ["--set", f"clickhouse.database={ch_db}", "--label", "forward:h=1", "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "a.parquet")]) == 0
    said = capsys.readouterr()
    out = " ".join(said.out.split())
    assert (
        f"note: file:{eth} holds no bars of the config's BTCUSDT; the dataset has ETHUSDT only"
    ) in " ".join(said.err.split())
    assert main([*base, "--out", str(tmp_path / "b.parquet"), "--symbols", "ETHUSDT"]) == 0
    named = " ".join(capsys.readouterr().out.split())
    ids = [re.search(r"dataset (ds-[0-9a-f]+)", text)[1] for text in (out, named)]  # type: ignore[index]
    assert ids[0] == ids[1]
    a, b = (pl.read_parquet(tmp_path / f"{x}.parquet") for x in "ab")
    assert_frame_equal(a, b)
    assert a["symbol"].unique().to_list() == ["ETHUSDT"] and a.height == BARS_PER_SYMBOL
    assert main([*base, "--out", str(tmp_path / "c.parquet"), "--symbols", "BTCUSDT"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"file:{eth} holds no bars for BTCUSDT (--symbols); it holds ETHUSDT: 44,640" in err


def test_truncated_replay_features_are_a_prefix_of_the_full_replay(
    ch_dsn: str, ch_db: str, tmp_path: Path
) -> None:
    """Built with --end just after bar t, every row (features included) equals the row of the
    dataset built over the whole slice: no feature looks at a later bar, of its own symbol or
    of the reference."""
    cfg = _cfg(ch_dsn, ch_db)
    start, end = parse_time("2024-01-05"), parse_time("2024-01-07")
    assert start is not None and end is not None
    full = pl.read_parquet(
        build_dataset(
            cfg,
            _spec(tmp_path / "full.parquet", start, end, labels=(), store=False),
            progress=False,
        ).path
    )
    n = (end - start) // NS_PER_MINUTE
    assert full.height == 2 * n
    fs = feature_set(SET, cfg.feature_sets)
    # Cuts: the first bar, around the pair feature's warm-up, mid-slice, the last bar; the end is
    # exclusive, at the next open time or just 1 ns after bar t's open.
    cuts = [(0, NS_PER_MINUTE), (fs.warmup - 1, 1), (fs.warmup, NS_PER_MINUTE), (1234, 1)]
    cuts.append((n - 1, NS_PER_MINUTE))
    for t, after in cuts:
        cut_end = start + t * NS_PER_MINUTE + after
        spec = _spec(tmp_path / f"cut{t}.parquet", start, cut_end, labels=(), store=False)
        res = build_dataset(cfg, spec, progress=False)
        assert res.rows_by_symbol == dict.fromkeys(SYMBOLS, t + 1), t
        cut = pl.read_parquet(res.path)
        for sym in SYMBOLS:
            expect = _per_symbol(full, sym).head(t + 1)
            assert_frame_equal(_per_symbol(cut, sym), expect, check_exact=True)


# --------------------------------------------------------------------------- 5. Kafka source


@pytest.mark.kafka
def test_dataset_from_kafka_equals_dataset_from_file(
    kafka_topic, kafka_bootstrap: str, ch_dsn: str, ch_db: str, tmp_path: Path
) -> None:
    start, end = parse_time("2024-01-02"), parse_time("2024-01-04")
    topic = kafka_topic(partitions=2, suffix="md.bars.v1")
    n = ingest_file(
        BARS_2024_01,
        kafka_bootstrap,
        "bars",
        topic=topic,
        start_ns=start,
        end_ns=end,
        progress=False,
    )
    assert n == 2 * 2 * 1440
    cfg = _cfg(ch_dsn, ch_db)
    cfg = cfg.model_copy(
        update={"kafka": cfg.kafka.model_copy(update={"bootstrap": kafka_bootstrap})}
    )
    assert start is not None and end is not None
    from_file = build_dataset(cfg, _spec(tmp_path / "f.parquet", start, end), progress=False)
    kspec = DatasetSpec(f"kafka:{topic}", SYMBOLS, SET, LABELS, tmp_path / "k.parquet", start, end)
    from_kafka = build_dataset(cfg, kspec, progress=False)
    assert from_kafka.dataset_id != from_file.dataset_id  # the source is part of the identity
    assert from_kafka.rows_by_symbol == from_file.rows_by_symbol == dict.fromkeys(SYMBOLS, 2880)
    assert_frame_equal(
        pl.read_parquet(from_kafka.path), pl.read_parquet(from_file.path), check_exact=True
    )
    client = connect(ch_dsn, ch_db)
    assert count_final(client, ch_db, "features", from_kafka.dataset_id) == 2 * 2880


# --------------------------------------------------------------------------- 6. file conventions

FULL_START, FULL_END = "2024-01-01", "2024-01-03"  # 2 days: past `full`'s 1440-bar warm-up
FULL_LABELS = ("forward:h=1,60", "triple_barrier:pt=2,sl=2,h=30,vol=ewma_vol_20")


@pytest.fixture
def full_on_bars(
    config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[Path, str]:
    """The built-in `full` set on kline bars (no trade counts) through the CLI: (file, stderr)."""
    out = tmp_path / "full.parquet"
    argv = ["offline", "dataset", "--source", SOURCE, "--start", FULL_START, "--end", FULL_END]
    argv += ["--symbols", "BTCUSDT,ETHUSDT", "--config", str(config_file), "--out", str(out)]
    argv += ["--feature-set", "full", *(a for lab in FULL_LABELS for a in ("--label", lab))]
    assert main([*argv, "--no-progress"]) == 0
    return out, " ".join(capsys.readouterr().err.split())


def test_times_are_utc_datetimes_and_missing_values_are_null(
    full_on_bars: tuple[Path, str],
) -> None:
    path, _ = full_on_bars
    frame = pl.read_parquet(path)
    fs = feature_set("full")
    label_cols = [c for lab in FULL_LABELS for c in parse_label(lab).columns]
    end_ts = [c for c in label_cols if c.endswith("_end_ts")]
    assert end_ts == ["fwd_ret_1_end_ts", "fwd_ret_60_end_ts", "tb_2_2_30_ewma_vol_20_end_ts"]
    for c in ("ts_event", "ts_init", *end_ts):
        assert frame.schema[c] == UTC_NS, c
    assert frame.schema["warmup"] == pl.Boolean
    assert frame["ts_event"].min() == dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    # The end time is the ts_event of the label's last row.
    for sym in SYMBOLS:
        part = _per_symbol(frame, sym)
        ends = part["fwd_ret_60_end"].drop_nulls().to_numpy()
        assert (
            part["fwd_ret_60_end_ts"].drop_nulls().to_list()
            == part["ts_event"].gather(ends).to_list()
        )
    # One convention: null, never NaN, in every float column.
    floats = [c for c, t in frame.schema.items() if t == pl.Float64]
    assert set(fs.columns) - set(floats) == {"trade_imbalance", "trade_count", "trade_size"}
    nans = frame.select(pl.col(floats).is_nan().sum())
    assert nans.row(0) == (0,) * len(floats)
    # Warm-up rows are null; so are labels whose horizon runs past the data.
    assert frame.filter(pl.col("warmup"))["garch_1440_0p05_0p94"].null_count() == 2 * 1440
    for sym in SYMBOLS:
        tail = _per_symbol(frame, sym).tail(60)
        assert tail["fwd_ret_60"].null_count() == tail["fwd_ret_60_end_ts"].null_count() == 60
    # The splits take the file's datetime columns as they are.
    eth = _per_symbol(frame, "ETHUSDT").filter(~pl.col("warmup")).drop_nulls("fwd_ret_60")
    splits = walk_forward(
        eth["ts_event"].to_numpy(), eth["fwd_ret_60_end_ts"].to_numpy(), n_folds=3
    )
    as_int = walk_forward(
        _int_times(eth)["ts_event"].to_numpy(),
        _int_times(eth)["fwd_ret_60_end_ts"].to_numpy(),
        n_folds=3,
    )
    for a, b in zip(splits, as_int, strict=True):
        np.testing.assert_array_equal(a.train, b.train)
        np.testing.assert_array_equal(a.test, b.test)


def test_warmup_flag_equals_each_columns_declared_warmup(full_on_bars: tuple[Path, str]) -> None:
    """Every kept column's first value is at its family's declared warm-up (per symbol, counted
    in that symbol's bars; the data have no gaps, so aligned bars = bars for pair features), and
    `warmup` is True exactly on the rows before the latest of them."""
    path, _ = full_on_bars
    frame = pl.read_parquet(path)
    fs = feature_set("full")
    declared = {
        c: (f.warmup, getattr(f, "ref", None))
        for s, f in zip(fs.specs, fs.features, strict=True)
        for c in output_columns(s, f)[1]
        if f.family not in TRADE_FLOW_FAMILIES
    }
    assert declared["garch_1440_0p05_0p94"] == (1440, None)
    assert declared["coint_btcusdt_1440_z"] == (1439, "BTCUSDT")
    assert declared["macd_12_26_9_hist"] == (33, None)
    for sym in SYMBOLS:
        part = _per_symbol(frame, sym)
        assert part.height == 2 * 1440
        latest = 0
        for c, (w, ref) in declared.items():
            values = part[c]
            if ref == sym:  # a pair feature against itself: never available, not a warm-up
                assert values.null_count() == part.height, (sym, c)
                continue
            first = int(values.is_not_null().arg_true()[0])
            assert first == w, (sym, c, first, w)
            latest = max(latest, w)
        assert latest == fs.warmup == 1440
        assert part["warmup"].to_list() == [t < latest for t in range(part.height)], sym


def test_bar_input_leaves_out_exactly_the_trade_flow_columns_and_says_so(
    full_on_bars: tuple[Path, str],
) -> None:
    path, err = full_on_bars
    trade_flow = ["trade_imbalance", "trade_count", "trade_size"]
    fs = feature_set("full")
    frame = pl.read_parquet(path)
    kept = [c for c in fs.columns if c not in trade_flow]
    assert len(kept) == len(fs.columns) - 3 == 52
    n_bar = 10
    assert frame.columns[n_bar : n_bar + len(kept) + 1] == [*kept, "warmup"]
    assert not set(trade_flow) & set(frame.columns)
    # A printed warning names the columns and why.
    assert "warning: left out of the dataset: trade_imbalance, trade_count, trade_size" in err
    assert "need bars built from trades" in err
    # ... and the parquet metadata records it.
    meta = read_metadata(path)
    assert sorted(meta["dropped_columns"]) == sorted(trade_flow)
    assert all("bars built from trades" in why for why in meta["dropped_columns"].values())
    assert meta["feature_columns"] == kept
    assert (meta["feature_set"], meta["feature_version"]) == ("full", fs.version)
    assert meta["dataset_id"].startswith("ds-")
    assert METADATA_KEY in (pq.read_schema(path).metadata or {})


def test_a_set_without_trade_flow_keeps_every_column_and_notes_nothing(
    ch_dsn: str, ch_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _cfg(ch_dsn, ch_db)
    spec = _spec(tmp_path / "p.parquet", "2024-01-01", "2024-01-02", labels=(), store=False)
    res = build_dataset(cfg, spec, progress=False)
    assert res.dropped == {}
    assert "left out" not in capsys.readouterr().err
    frame = pl.read_parquet(res.path)
    assert frame.columns == [*BAR_NAMES, *SPECS_COLUMNS, "warmup", "feature_set", "feature_version"]
    assert read_metadata(res.path)["dropped_columns"] == {}

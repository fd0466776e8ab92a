"""`cryptoflow offline dataset` end to end on the shipped real bars (Jan 2024, 1m), no mocks:
features equal a FeatureSet fed the same bars directly, labels equal `compute_labels`, the
ClickHouse `features` table mirrors the parquet, reruns replace their own rows, bad requests fail
before any work, and a truncated replay's features are a prefix of the full one (no lookahead)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from dataflows.backtest import parse_time
from dataflows.cli import main
from dataflows.ingest import ingest_file
from infra.clickhouse import connect, count_final, query_df
from offline.dataset import DatasetSpec, build_dataset, dataset_id_for
from offline.labels import compute_labels, parse_label
from operators.features import FeatureSet, feature_set
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
        for c in BAR_COLS:
            assert part[c].to_list() == [getattr(b, c) for b in bars[sym]], (sym, c)
        # Features bit for bit (NaN == NaN) the operators' own output.
        got = part.select(fs.columns).to_numpy()
        np.testing.assert_array_equal(got, ref[sym], err_msg=sym)
        # After warm-up everything is finite, except the reference's pair feature on itself.
        finite = np.isfinite(got[fs.warmup :]).all(axis=0)
        assert finite.tolist() == [sym != "BTCUSDT" or c != "corr_btcusdt_60" for c in fs.columns]
        # Labels equal compute_labels on the parquet's own bar (and feature) columns.
        expect = compute_labels(LABELS, part.select(*BAR_COLS, "ewma_vol_20"))
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
    assert rows.select("symbol", "ts_event", "ts_init").equals(
        frame.select("symbol", "ts_event", "ts_init")
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
        (["--start", "2025-01-01", "--end", "2025-01-02"], "the replay produced no bars", False),
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

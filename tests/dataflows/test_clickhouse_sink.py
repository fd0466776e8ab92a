"""The Bytewax ClickHouse sink on real chDB: every row exactly once, on one and on two workers."""

from __future__ import annotations

import threading

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, cluster_main, run_main

from dataflows.io.clickhouse import ClickHouseSink, clickhouse_output
from dataflows.runner import execute
from infra import clickhouse as ch
from infra import faults
from infra.faults import Fault
from schemas.messages import NS_PER_MINUTE, Bar, Fill, Trade

T0 = 1_700_000_000_000_000_000
N_TRADES = 2_500


def trade(i: int) -> Trade:
    return Trade("BTCUSDT", T0 + i, T0 + i, i, 100.0, 1.0, "buy")


def bar(i: int) -> Bar:
    return Bar("BTCUSDT", T0 + i * NS_PER_MINUTE, T0, 1.0, 2.0, 0.5, 1.5, 3.0)


def fill(i: int) -> Fill:
    return Fill(f"f{i}", f"o{i}", "BTCUSDT", T0 + i, T0 + i, "buy", 100.0, 1.0, 0.1)


def items() -> list[tuple[str, object]]:
    """Single structs and lists mixed, interleaved across tables."""
    out: list[tuple[str, object]] = []
    for i in range(N_TRADES):
        out.append(("trades", trade(i)))
        if i % 10 == 0:
            out.append(("bars", [bar(i + k) for k in range(3)]))
        if i % 100 == 0:
            out.append(("fills", fill(i)))
    return out


EXPECTED = {"trades": N_TRADES, "bars": 3 * 250, "fills": 25}


class CountingSink(ClickHouseSink):
    """Records on which worker threads partitions were built."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.built_on: list[int] = []

    def build_part(self, step_id, for_part, resume_state):
        self.built_on.append(threading.get_ident())
        return super().build_part(step_id, for_part, resume_state)


def build_flow(sink: ClickHouseSink, explicit: bool, seen: list[int]) -> Dataflow:
    flow = Dataflow("ch_sink_test")
    s = op.input("inp", flow, TestingSource(items(), batch_size=50))
    s = op.redistribute("spread", s)  # items reach the sink from every worker

    def note(item):
        seen.append(threading.get_ident())
        return item

    s = op.map("note", s, note)
    if explicit:
        clickhouse_output("ch", s, sink)
    else:
        op.output("ch", s, sink)
    return flow


def check_exactly_once(ch_dsn: str, ch_db: str, run_id: str, sink: ClickHouseSink) -> None:
    client = ch.connect(ch_dsn, ch_db)
    assert sink.writer is not None and sink.writer.written == EXPECTED
    assert sink.writer.pending() == {}
    for table, n in EXPECTED.items():
        raw = int(
            client.command(f"SELECT count() FROM `{ch_db}`.`{table}` WHERE run_id = '{run_id}'")
        )
        assert raw == n, table  # no loss and no duplicate write
        assert ch.count_final(client, ch_db, table, run_id) == n, table
    # batched: two threshold flushes of trades, the rest in the end-of-epoch / close flush
    assert sink.writer.inserts <= 6


@pytest.mark.parametrize("explicit", [False, True], ids=["op_output", "clickhouse_output"])
def test_sink_one_worker(ch_dsn: str, ch_db: str, explicit: bool) -> None:
    sink = CountingSink(ch_dsn, ch_db, "one", batch_rows=1000, batch_seconds=60)
    seen: list[int] = []
    run_main(build_flow(sink, explicit, seen))
    assert len(sink.built_on) == 1
    check_exactly_once(ch_dsn, ch_db, "one", sink)


@pytest.mark.parametrize("explicit", [False, True], ids=["op_output", "clickhouse_output"])
def test_sink_two_workers(ch_dsn: str, ch_db: str, explicit: bool) -> None:
    sink = CountingSink(ch_dsn, ch_db, "two", batch_rows=1000, batch_seconds=60)
    seen: list[int] = []
    cluster_main(build_flow(sink, explicit, seen), [], 0, worker_count_per_proc=2)
    assert len(set(seen)) == 2  # the input really was spread over both workers
    assert len(sink.built_on) == 1  # but one partition, one writer
    check_exactly_once(ch_dsn, ch_db, "two", sink)


def test_snapshot_flushes_the_epoch(ch_dsn: str, ch_db: str) -> None:
    sink = ClickHouseSink(ch_dsn, ch_db, "snap", batch_rows=1000, batch_seconds=60)
    part = sink.build_part("ch", "clickhouse", None)
    part.write_batch([trade(i) for i in range(10)] + [[bar(0), bar(1)]] + [("fills", fill(0))])
    client = ch.connect(ch_dsn, ch_db)
    assert ch.count_final(client, ch_db, "trades", "snap") == 0  # still buffered
    assert part.snapshot() is None
    assert ch.count_final(client, ch_db, "trades", "snap") == 10
    assert ch.count_final(client, ch_db, "bars", "snap") == 2
    assert ch.count_final(client, ch_db, "fills", "snap") == 1
    part.close()


def test_unknown_struct_type_is_an_error(ch_dsn: str, ch_db: str) -> None:
    from schemas.messages import OrderIntent  # no table stores intents

    sink = ClickHouseSink(ch_dsn, ch_db, "bad")
    part = sink.build_part("ch", "clickhouse", None)
    intent = OrderIntent("i1", "BTCUSDT", T0, T0, "buy")
    with pytest.raises(ch.ClickHouseError, match="OrderIntent"):
        part.write_batch([intent])


def test_sink_retries_then_faults_and_close_stays_quiet(ch_dsn: str, ch_db: str) -> None:
    """After a fault, `close()` (which Bytewax calls while unwinding) neither writes nor raises:
    a second exception there would abort the process."""
    faults.clear()
    try:
        sink = ClickHouseSink(ch_dsn, ch_db, "fault", retries=1, retry_backoff_s=0.01)
        part = sink.build_part("ch", "clickhouse", None)
        part.write_batch([trade(i) for i in range(5)])
        ch.connect(ch_dsn, ch_db).command(f"DROP TABLE `{ch_db}`.trades")
        with pytest.raises(Fault, match=r"clickhouse: insert of 5 rows .*\(2 attempts\)"):
            part.snapshot()
        part.close()  # no exception
        part.write_batch([trade(9)])  # ignored: the run is failing
    finally:
        faults.clear()


def test_flow_fault_surfaces_from_execute(ch_dsn: str, ch_db: str) -> None:
    """Bytewax wraps the step's exception (and Rust panics); `execute` re-raises the Fault."""
    client = ch.connect(ch_dsn, ch_db)

    def drop_once(item: tuple[str, Trade]) -> tuple[str, Trade]:
        if item[1].trade_id == 3:  # the table vanishes mid-run: a real insert failure
            client.command(f"DROP TABLE IF EXISTS `{ch_db}`.trades")
        return item

    flow = Dataflow("ch_fault")
    src = op.input("in", flow, TestingSource([("trades", trade(i)) for i in range(10)]))
    sink = ClickHouseSink(ch_dsn, ch_db, "f", batch_rows=1000, retries=0)
    clickhouse_output("ch", op.map("drop", src, drop_once), sink)
    try:
        with pytest.raises(Fault) as info:
            execute(flow, 1)
        assert str(info.value).startswith(f"clickhouse: insert of 10 rows into {ch_db}.trades")
        assert info.value.__cause__ is not None  # Bytewax's error, kept for the details log
    finally:
        faults.clear()

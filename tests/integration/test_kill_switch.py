"""The kill switch on the real broker: a paper run over real bars, operator commands sent while
it runs (`cryptoflow control`), and what the run did about them, read back from Kafka and
ClickHouse.

Each test has its own market and control topics (a halt on the shared control.commands.v1 would
stop every paper run on the test broker) and tails them the way `cryptoflow paper` does
(`run_paper`, given the control topic)."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from confluent_kafka import Consumer, TopicPartition

from dataflows.cli import main
from dataflows.cli_control import new_command, publish_command
from infra.kafka.client import CheckedProducer
from schemas.codec import encode
from schemas.messages import Bar
from tests.operators.opdata import real_bars
from tests.paths import ROOT
from tests.reference.sma_cross_numpy import sma_cross_backtest

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

SYMBOL = "BTCUSDT"
FAST, SLOW = 2, 3  # trades every few bars: signals keep coming after the halt
INTERVAL_NS = 60 * 10**9
OUTPUTS = ("orders.v1", "fills.v1", "risk.denials.v1", "risk.state.v1", "dlq.v1")
CLOSE_RE = re.compile(r"last close (\d{4}-\d\d-\d\d \d\d:\d\d) UTC")

# `cryptoflow paper --source kafka:<topic> --symbols BTCUSDT --start 2024-01-01`, reading
# commands from the test's own control topic.
_PAPER = """
import sys
from dataflows.backtest import parse_time
from dataflows.paper import run_paper
from schemas.config import load_config

config, topic, run_id, control = sys.argv[1:5]
run_paper(load_config(config), topic, ("BTCUSDT",), start_ns=parse_time("2024-01-01"),
          run_id=run_id, control_topic=control)
"""


def _bars() -> list[Bar]:
    return list(real_bars(SYMBOL)[:320])


def _halt_bar(bars: list[Bar]) -> int:
    """k: after bars[:k] the account is long (a buy filled at bars[k-1]'s open) and nothing
    else is decided for two bars, so the halt's flattening sell is the only working order."""
    ref = sma_cross_backtest(
        np.array([b.open for b in bars]), np.array([b.close for b in bars]), FAST, SLOW
    )
    fills = list(zip(ref["fill_bar"].tolist(), ref["side"].tolist(), strict=True))
    for (at, side), (nxt, _) in itertools.pairwise(fills):
        if at >= 150 and side == 1 and nxt >= at + 3:
            return int(at) + 1
    raise AssertionError("no long position to halt in the bars")


def _produce(bootstrap: str, topic: str, bars: list[Bar]) -> None:
    with CheckedProducer(bootstrap) as p:
        for b in bars:
            p.produce(topic, encode(b), b.symbol, b.ts_event // 10**6)


def _utc(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M")


class Outputs:
    """What one run publishes (orders, fills, denials, trading state, dead letters), read from
    the ends the topics had before the run started, filtered by its run_id header."""

    def __init__(self, bootstrap: str, run_id: str) -> None:
        self.run_id = run_id.encode()
        self.got: dict[str, list[dict[str, Any]]] = {t: [] for t in OUTPUTS}
        self._c = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": uuid.uuid4().hex,
                "enable.auto.commit": False,
            }
        )
        assign = []
        for t in OUTPUTS:
            for p in self._c.list_topics(t, timeout=10).topics[t].partitions:
                hi = self._c.get_watermark_offsets(TopicPartition(t, p), 10)[1]
                assign.append(TopicPartition(t, p, hi))
        self._c.assign(assign)

    def read(self, timeout_s: float = 0.2) -> None:
        for m in self._c.consume(10_000, timeout_s):
            if m.error() is None and dict(m.headers() or []).get("run_id") == self.run_id:
                self.got[m.topic() or ""].append(json.loads(m.value()))

    def wait(self, what: str, ok: Callable[[Outputs], bool], paper: Paper, timeout_s: float = 30):
        deadline = time.monotonic() + timeout_s
        while not ok(self):
            assert time.monotonic() < deadline, f"no {what} within {timeout_s} s:\n{paper.out()}"
            assert paper.proc.poll() is None, paper.out()
            self.read()

    def drain(self) -> None:
        """Everything published so far (after the run stopped)."""
        before = -1
        while before != (now := sum(map(len, self.got.values()))):
            before = now
            self.read(0.5)

    def close(self) -> None:
        self._c.close()

    @property
    def states(self) -> list[dict[str, Any]]:
        return self.got["risk.state.v1"]


class Paper:
    """One paper run in its own process; its output is read on a thread."""

    def __init__(self, topic: str, control: str, run_id: str, env: dict[str, str], cfg: Path):
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _PAPER, str(cfg), topic, run_id, control],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def out(self) -> str:
        return "\n".join(self.lines)

    def wait_close(self, bar: Bar, timeout_s: float = 30) -> None:
        """Until the heartbeat says `bar` has closed in the flow."""
        want = _utc(bar.ts_event + bar.interval_ns)
        deadline = time.monotonic() + timeout_s
        while True:
            closes = [m.group(1) for line in self.lines if (m := CLOSE_RE.search(line))]
            if closes and closes[-1] >= want:
                return
            assert time.monotonic() < deadline, f"no close at {want}:\n{self.out()}"
            assert self.proc.poll() is None, self.out()
            time.sleep(0.05)

    def stop(self) -> None:
        time.sleep(0.3)
        self.proc.send_signal(signal.SIGINT)
        try:
            rc = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("paper did not stop within 30 s:\n" + self.out()) from None
        time.sleep(0.2)  # the reader thread drains the pipe
        assert rc == 0, self.out()
        assert "panicked" not in self.out()


@pytest.fixture
def session(kafka_topic, kafka_bootstrap: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Topics, a config that trades often, the environment of a paper process; its process is
    killed if the test left it running."""
    cfg = tmp_path / "kill.toml"
    base = (ROOT / "examples" / "sma_cross.toml").read_text()
    base = base.replace("fast = 10", f"fast = {FAST}").replace("slow = 50", f"slow = {SLOW}")
    cfg.write_text(base + "\n[paper]\nepoch_s = 0.3\nheartbeat_s = 0.2\n")
    env = {**os.environ, "KAFKA_BOOTSTRAP": kafka_bootstrap, "CRYPTOFLOW_DATA_DIR": str(tmp_path)}
    env.pop("CLICKHOUSE_DSN", None)
    s: dict[str, Any] = {
        "bootstrap": kafka_bootstrap,
        "market": kafka_topic(partitions=2, suffix="md.bars.v1"),
        "control": kafka_topic(partitions=1, suffix="control.commands.v1"),
        "run_id": f"paper-kill-{uuid.uuid4().hex[:8]}",
        "env": env,
        "cfg": cfg,
        "data_dir": tmp_path,
        "procs": [],
    }
    yield s
    for p in s["procs"]:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait()


def _start(s: dict[str, Any]) -> tuple[Paper, Outputs]:
    outputs = Outputs(s["bootstrap"], s["run_id"])
    paper = Paper(s["market"], s["control"], s["run_id"], s["env"], s["cfg"])
    s["procs"].append(paper)
    return paper, outputs


def _clickhouse(data_dir: Path, sql: str, run_id: str) -> list[dict[str, Any]]:
    """Rows of the run's embedded ClickHouse, queried from another process (chDB opens one data
    path per process, and this one may hold the session's)."""
    code = (
        "import json, sys\n"
        "from infra.clickhouse import connect, query_df\n"
        "c = connect(sys.argv[1], 'cryptoflow')\n"
        "print(json.dumps(query_df(c, sys.argv[2], {'run_id': sys.argv[3]}).to_dicts()))\n"
    )
    dsn = f"chdb:///{(data_dir / 'clickhouse').resolve().as_posix().lstrip('/')}"
    env = {k: v for k, v in os.environ.items() if k != "CLICKHOUSE_DSN"}
    proc = subprocess.run(
        [sys.executable, "-c", code, dsn, sql, run_id],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_halt_stops_new_orders_within_a_bar_and_flattens(
    session: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    s = session
    bars = _bars()
    k = _halt_bar(bars)
    _produce(s["bootstrap"], s["market"], bars[:k])  # history: the run replays it, then tails
    # A command issued before the run started is not for it.
    publish_command(s["bootstrap"], new_command("halt", "before the run"), s["control"])
    paper, out = _start(s)
    try:
        entry = bars[k - 1].ts_event  # long from this bar's open: the position the halt closes
        out.wait(
            "entry fill",
            lambda o: any(f["ts_event"] == entry for f in o.got["fills.v1"]),
            paper,
            timeout_s=45,
        )
        assert not out.states, out.states

        # The kill switch, as an operator pulls it.
        monkeypatch.setenv("KAFKA_BOOTSTRAP", s["bootstrap"])
        monkeypatch.setenv("CRYPTOFLOW_DATA_DIR", str(s["data_dir"]))
        rc = main(["control", "halt", "--reason", "exchange incident", "--topic", s["control"]])
        sent = capsys.readouterr().out.strip()
        assert rc == 0 and len(sent.splitlines()) == 1 and sent.startswith("sent halt "), sent
        out.wait("halt", lambda o: bool(o.states), paper)

        _produce(s["bootstrap"], s["market"], bars[k:])  # the market goes on
        paper.wait_close(bars[-1])
        paper.stop()
    finally:
        out.drain()
        out.close()

    # The trading state: active -> halted, once, with the operator's reason, on the account's
    # clock (the close of the last bar booked before the command came).
    halt_ts = bars[k - 1].ts_event + INTERVAL_NS
    assert [(e["old"], e["new"], e["reason"], e["ts_event"]) for e in out.states] == [
        ("active", "halted", "kill switch: exchange incident", halt_ts)
    ]
    orders = out.got["orders.v1"]
    signal_ts = [o["ts_event"] for o in orders if o["cause"] == "signal"]
    assert len(signal_ts) > 20  # it traded often before the halt
    assert max(signal_ts) <= halt_ts + INTERVAL_NS, "a signal order after the halt"
    # Signals after the halt are denied by the trading state instead.
    denied = [d for d in out.got["risk.denials.v1"] if d["ts_event"] > halt_ts]
    assert len(denied) >= 5
    assert {(d["rule"], d["cause"]) for d in denied} == {("trading_state", "signal")}
    # The open position is closed by the halt at the next bar's open.
    closing = [o for o in orders if o["cause"] == "halt"]
    assert [(o["side"], o["ts_event"]) for o in closing] == [("sell", halt_ts)]
    fill = [f for f in out.got["fills.v1"] if f["order_id"] == closing[0]["order_id"]]
    assert [(f["ts_event"], f["price"]) for f in fill] == [(bars[k].ts_event, bars[k].open)]
    buys = sum(f["qty"] for f in out.got["fills.v1"] if f["side"] == "buy")
    sells = sum(f["qty"] for f in out.got["fills.v1"] if f["side"] == "sell")
    assert buys == pytest.approx(sells, rel=1e-12)  # flat after the halt

    # ClickHouse has the same story.
    rows = _clickhouse(
        s["data_dir"],
        "SELECT old, new, reason, toUnixTimestamp64Nano(ts_event) AS ts_event "
        "FROM cryptoflow.trading_state FINAL "
        "WHERE run_id = {run_id:String}",
        s["run_id"],
    )
    assert [(r["old"], r["new"], r["reason"], r["ts_event"]) for r in rows] == [
        ("active", "halted", "kill switch: exchange incident", halt_ts)
    ]
    rows = _clickhouse(
        s["data_dir"],
        "SELECT rule, count() AS n FROM cryptoflow.order_denials FINAL "
        "WHERE run_id = {run_id:String} GROUP BY rule",
        s["run_id"],
    )
    by_rule = Counter(d["rule"] for d in out.got["risk.denials.v1"])
    assert {r["rule"]: r["n"] for r in rows} == by_rule


def test_a_redelivered_command_applies_once_and_a_bad_record_is_a_dead_letter(
    session: dict[str, Any],
) -> None:
    """Also: a restarted run resumes reading commands where its snapshot left off."""
    s = session
    bars = _bars()
    k = _halt_bar(bars)
    _produce(s["bootstrap"], s["market"], bars[:k])
    paper, out = _start(s)
    boot, control = s["bootstrap"], s["control"]
    halt = new_command("halt", "first halt")
    try:
        paper.wait_close(bars[k - 1], timeout_s=45)
        publish_command(boot, b"not json at all", control)
        publish_command(boot, b'{"command": "explode", "command_id": "x"}', control)
        publish_command(boot, halt, control)
        out.wait("halt", lambda o: len(o.states) == 1, paper)
        publish_command(boot, new_command("resume", "resumed"), control)
        out.wait("resume", lambda o: len(o.states) == 2, paper)
        publish_command(boot, halt, control)  # the same command again: already applied
        _produce(boot, s["market"], bars[k:])
        paper.wait_close(bars[-1])
        paper.stop()
        # A halt while the run is stopped: the resumed run reads on from its snapshot's
        # offset, so it applies this one, and neither the commands before it nor the repeat.
        publish_command(boot, new_command("halt", "while stopped"), control)
        paper = Paper(s["market"], control, s["run_id"], s["env"], s["cfg"])
        s["procs"].append(paper)
        out.wait("halt after the restart", lambda o: len(o.states) == 3, paper)
        time.sleep(1.0)  # anything else it would wrongly apply comes now
        paper.stop()
        assert "resuming" in paper.out()
    finally:
        out.drain()
        out.close()

    assert [(e["old"], e["new"], e["reason"]) for e in out.states] == [
        ("active", "halted", "kill switch: first halt"),
        ("halted", "active", "resume: resumed"),
        ("active", "halted", "kill switch: while stopped"),
    ]
    # Trading went on after the resume: the re-delivered halt was not applied again.
    resumed, last = out.states[1]["ts_event"], out.states[2]["ts_event"]
    after = [
        o
        for o in out.got["orders.v1"]
        if o["cause"] == "signal" and resumed < o["ts_event"] <= last
    ]
    assert len(after) >= 5
    assert not [d for d in out.got["risk.denials.v1"] if d["ts_event"] > resumed]
    # The malformed records are dead letters of the control topic; the flow kept running.
    dead = out.got["dlq.v1"]
    assert [d["payload"] for d in dead] == [
        "not json at all",
        '{"command": "explode", "command_id": "x"}',
    ]
    assert {d["source"] for d in dead} == {"control.commands.v1"}
    assert all(d["reason"].startswith("bad command: ") for d in dead), dead


def test_a_missing_control_topic_fails_before_the_run_exists(
    session: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataflows.paper import recovery_dir, run_paper
    from infra import faults
    from schemas.config import load_config

    s = session
    monkeypatch.setenv("CRYPTOFLOW_DATA_DIR", str(s["data_dir"]))
    monkeypatch.setenv("KAFKA_BOOTSTRAP", s["bootstrap"])
    missing = f"test.{uuid.uuid4().hex[:8]}.control.commands.v1"
    with pytest.raises(faults.Fault) as exc:
        run_paper(load_config(s["cfg"]), s["market"], (SYMBOL,), run_id=s["run_id"],
                  control_topic=missing)  # fmt: skip
    faults.clear()
    assert str(exc.value) == (
        f"kafka: topic {missing} does not exist on {s['bootstrap']} (the operator commands "
        "topic); check that the project topics exist: cryptoflow infra up creates them"
    )
    assert not recovery_dir(s["run_id"]).exists()

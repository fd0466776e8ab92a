"""`cryptoflow control halt|resume|flatten`: one command on the control topic, acknowledged by
the real broker, said in one line; an unreachable broker or a missing topic is one line and exit
code 3. (What a run does with the commands: tests/integration/test_kill_switch.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from dataflows.cli import main, parser
from dataflows.cli_control import new_command, publish_command
from infra import faults
from schemas.codec import decoder
from schemas.messages import Command, FlattenPositions, HaltTrading, ResumeTrading
from tests.paths import ROOT


@pytest.fixture(autouse=True)
def _data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRYPTOFLOW_DATA_DIR", str(tmp_path))  # the details logs of failures


def _records(bootstrap: str, topic: str) -> list[tuple[bytes | None, bytes, int]]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex})
    try:
        hi = c.get_watermark_offsets(TopicPartition(topic, 0), 10)[1]
        c.assign([TopicPartition(topic, 0, 0)])
        got: list[tuple[bytes | None, bytes, int]] = []
        deadline = time.monotonic() + 20
        while len(got) < hi and time.monotonic() < deadline:
            for m in c.consume(100, 0.5):
                if m.error() is None:
                    got.append((m.key(), m.value(), m.timestamp()[1]))
        return got
    finally:
        c.close()


def test_the_control_verb_has_help_with_defaults_and_an_example(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exc:
        parser().parse_args(["control", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    flat = " ".join(out.split())  # as wide as the terminal
    assert "{flatten,halt,resume}" in flat and "(default: control.commands.v1)" in flat
    assert "\nexample:\n  cryptoflow control halt --reason" in out


def test_each_command_is_sent_once_acknowledged_and_said_in_one_line(
    kafka_topic, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    topic = kafka_topic(partitions=1, suffix="control.commands.v1")
    monkeypatch.setenv("KAFKA_BOOTSTRAP", kafka_bootstrap)
    t0 = time.time_ns()
    lines = []
    for argv in (["halt", "--reason", "exchange incident"], ["resume"], ["flatten"]):
        assert main(["control", *argv, "--topic", topic]) == 0
        out = capsys.readouterr().out
        assert len(out.strip().splitlines()) == 1, out
        lines.append(out.strip())
    t1 = time.time_ns()

    got = _records(kafka_bootstrap, topic)
    assert len(got) == 3
    cmds: list[Command] = [decoder(Command).decode(v) for _, v, _ in got]  # type: ignore[arg-type]
    assert [type(c) for c in cmds] == [HaltTrading, ResumeTrading, FlattenPositions]
    assert cmds[0].reason == "exchange incident"
    assert cmds[1].reason.endswith(" via cryptoflow control")  # user@host by default
    for (key, value, ts_ms), cmd, line, offset in zip(got, cmds, lines, range(3), strict=True):
        assert uuid.UUID(cmd.command_id).version == 4
        assert t0 <= cmd.ts_event == cmd.ts_init <= t1
        assert key == b"account" and ts_ms == cmd.ts_event // 1_000_000
        assert line == (
            f"sent {cmd.__struct_config__.tag} {cmd.command_id} to {topic} on {kafka_bootstrap} "
            f"(partition 0, offset {offset}): {value.decode()}"
        )
    assert len({c.command_id for c in cmds}) == 3


def test_a_missing_topic_names_the_flag_and_infra_up(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP", kafka_bootstrap)
    topic = f"test.{uuid.uuid4().hex[:8]}.control.commands.v1"  # never created
    assert main(["control", "halt", "--topic", topic]) == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(
        f"error: kafka: topic {topic} does not exist on {kafka_bootstrap}; check the --topic name"
    ), err


def test_an_unreachable_broker_is_one_line_and_exit_code_3(tmp_path: Path) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP": "127.0.0.1:1", "CRYPTOFLOW_DATA_DIR": str(tmp_path)}
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "dataflows.cli", "control", "halt"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3, proc.stderr
    assert time.monotonic() - t0 < 20
    assert proc.stdout == ""  # nothing was sent
    line = proc.stderr.strip()
    assert len(line.splitlines()) == 1, line
    assert line.startswith("error: kafka: broker 127.0.0.1:1 not answering ("), line
    assert "while looking up topic control.commands.v1; check that the broker is running" in line


def test_an_unacknowledged_command_is_a_kafka_fault() -> None:
    """Past the probe, a broker that does not acknowledge within the timeout is a `Fault`."""
    t0 = time.monotonic()
    with pytest.raises(faults.Fault) as exc:
        publish_command("127.0.0.1:1", new_command("halt"), "control.commands.v1", timeout_s=1)
    faults.clear()
    assert time.monotonic() - t0 < 10
    assert exc.value.component == "kafka"
    assert "to control.commands.v1 not acknowledged by 127.0.0.1:1 within 1 s (" in exc.value.what


def test_infra_up_creates_the_control_topic(kafka_bootstrap: str) -> None:
    """The test broker is made by `broker.up`, as `cryptoflow infra up` makes one."""
    from infra.kafka import broker

    assert broker.list_topics(kafka_bootstrap).get("control.commands.v1") == 1

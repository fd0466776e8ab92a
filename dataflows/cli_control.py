"""`cryptoflow control halt|resume|flatten`: one operator command to control.commands.v1.

Every paper (and live) run reads that topic and applies a command on arrival (docs/risk.md,
"Kill switch"): `halt` stops new risk at once (working orders canceled, positions flattened if
`risk.state.flatten_on_halt`), `resume` trades again, `flatten` closes every position and leaves
the trading state as it is. The command is sent once, with a fresh command id, and the verb ends
when the broker has acknowledged it (acks=all).
"""

from __future__ import annotations

import argparse
import getpass
import logging
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

from schemas.codec import encode
from schemas.messages import Command, FlattenPositions, HaltTrading, ResumeTrading
from schemas.topics import CONTROL

__all__ = ["ACTIONS", "add_control", "cmd_control", "new_command", "publish_command"]

ACTIONS: dict[str, type[HaltTrading] | type[ResumeTrading] | type[FlattenPositions]] = {
    "halt": HaltTrading,
    "resume": ResumeTrading,
    "flatten": FlattenPositions,
}
ACK_TIMEOUT_S = 10.0

_LOG = logging.getLogger("cryptoflow.kafka.control")
_LOG.addHandler(logging.NullHandler())


def _operator() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def new_command(action: str, reason: str | None = None, *, now_ns: int | None = None) -> Command:
    """A command with a fresh id (uuid4), issued now (wall clock ns); the default reason names
    the operator and the host (the account records it as "kill switch: <reason>" on a halt,
    "resume: <reason>" on a resume)."""
    cls = ACTIONS[action]
    now = time.time_ns() if now_ns is None else now_ns
    why = reason if reason else f"{_operator()} via cryptoflow control"
    return cls(command_id=str(uuid.uuid4()), ts_event=now, ts_init=now, reason=why)


def publish_command(
    bootstrap: str,
    cmd: Command | bytes,
    topic: str = CONTROL.name,
    *,
    key: str | None = None,
    timeout_s: float = ACK_TIMEOUT_S,
) -> tuple[int, int]:
    """Send one command (or raw bytes: tests send malformed records) and wait for the broker's
    acknowledgement; returns (partition, offset). Not acknowledged within `timeout_s`: a kafka
    `Fault` (one line, what to check)."""
    from confluent_kafka import KafkaError, Producer

    from infra.faults import raise_fault
    from infra.kafka.reader import BROKER_CHECK

    if isinstance(cmd, bytes):
        value, ts_ms, what = cmd, None, "record"
    else:
        value, ts_ms, what = encode(cmd), cmd.ts_event // 1_000_000, cmd.command_id
        key = cmd.account if key is None else key
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,  # acks=all, no duplicate on a retry
            "acks": "all",
            "linger.ms": 0,
            "message.timeout.ms": max(1, int(timeout_s * 1000)),
            "reconnect.backoff.max.ms": 1000,
            "logger": _LOG,  # librdkafka's lines go to the details log, not the terminal
        }
    )
    result: list[Any] = []

    def delivered(err: KafkaError | None, msg: Any) -> None:
        result.append(err if err is not None else (msg.partition(), msg.offset()))

    producer.produce(topic, value, key, timestamp=ts_ms or 0, on_delivery=delivered)
    deadline = time.monotonic() + timeout_s + 5.0  # message.timeout.ms reports before this
    while not result and time.monotonic() < deadline:
        producer.poll(0.1)
    if not result:
        producer.purge()
    got = result[0] if result else None
    if not isinstance(got, tuple):
        why = f"{got.name()}: {got.str()}" if isinstance(got, KafkaError) else "no answer"
        raise raise_fault(
            "kafka",
            f"command {what} to {topic} not acknowledged by {bootstrap} within "
            f"{timeout_s:g} s ({why})",
            BROKER_CHECK,
        )
    return got


def cmd_control(args: argparse.Namespace) -> int:
    from dataflows.cli_common import _cfg, _probe_topic

    cfg = _cfg(args)
    topic = args.topic
    # The broker and the topic answer within seconds, or one line and exit code 3.
    _probe_topic(cfg, f"kafka:{topic}", "--topic")
    cmd = new_command(args.action, args.reason)
    part, offset = publish_command(cfg.kafka.bootstrap, cmd, topic)
    print(
        f"sent {args.action} {cmd.command_id} to {topic} on {cfg.kafka.bootstrap} "
        f"(partition {part}, offset {offset}): {encode(cmd).decode()}",
        flush=True,
    )
    return 0


def add_control(
    sub: Any,
    verb: Callable[..., argparse.ArgumentParser],
    config_args: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Register `cryptoflow control` (cli.py's `_verb` and `config_args`)."""
    s = verb(
        sub,
        "control",
        "operator commands to every paper/live run: halt (kill switch), resume, flatten",
        'cryptoflow control halt --reason "exchange incident"',
        description="Publish one operator command to the control topic every paper/live run\n"
        "reads, and wait for the broker's acknowledgement. A run applies it on arrival,\n"
        "within the bar (docs/risk.md, Kill switch):\n"
        "  halt     HALTED at once: working orders canceled, positions flattened\n"
        "           (risk.state.flatten_on_halt), every later order denied\n"
        "  resume   back to ACTIVE (an operator's decision, never automatic)\n"
        "  flatten  close every position; the trading state is unchanged",
    )
    s.add_argument("action", choices=sorted(ACTIONS), help="the command (see above)")
    s.add_argument(
        "--reason",
        help="why, recorded with the trading-state change (default: <user>@<host> via "
        "cryptoflow control)",
    )
    s.add_argument(
        "--topic",
        default=CONTROL.name,
        help="the control topic the runs read (tests use their own)",
    )
    config_args(s)
    s.set_defaults(fn=cmd_control)

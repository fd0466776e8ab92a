"""The operator's control topic (control.commands.v1) as a Bytewax source for paper/live runs.

`ControlSource` is the tailing phase of `KafkaRangeSource` on its own: no history, no time
filter, no pacing. A fresh run starts at `start` (the topic's end when the run was created,
`control_start`), so commands issued before the run began never reach it; a run restored by
Bytewax recovery continues from the snapshotted next offset per partition, so a command issued
while it was stopped is applied when it comes back. It never ends (wrap it in
`StoppableSource` for a clean stop), and an idle topic costs one empty poll per 100 ms: the
account step applies commands on arrival and never waits for this input.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dataflows.io.kafka import KafkaRangeSource, State, _RangePartition
from infra.kafka.client import topic_watermarks

__all__ = ["ControlSource", "control_start", "topic_end"]


class ControlSource(KafkaRangeSource):
    """Tail `topic` from `start` (`{partition: offset}`; None: its end when the flow starts).

    Items are lists of `RawMessage`s, decoded (or dead-lettered) by the flow's commands step.
    Partitions missing from `start` (added later) are read from their log start."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        start: Mapping[int, int] | None = None,
        *,
        batch_size: int = 1_000,
        outage_s: float = 30.0,
        metadata_timeout_s: float = 5.0,
        consumer_config: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            bootstrap,
            topic,
            None,
            None,
            batch_size=batch_size,
            tail=True,
            outage_s=outage_s,
            metadata_timeout_s=metadata_timeout_s,
            consumer_config=consumer_config,
        )
        self.start = dict(start) if start is not None else None

    def build_part(
        self, step_id: str, for_part: str, resume_state: State | None
    ) -> _RangePartition:
        if resume_state is None:  # fresh: straight to tailing, from `start` or the end now
            start = self.start
            if start is None:
                start = {p: hi for p, (_lo, hi) in self.watermarks().items()}
            resume_state = {"live": dict(start), "origin": None}
        # The base class fills in new partitions and checks the broker and the topic.
        return super().build_part(step_id, for_part, resume_state)

    def __repr__(self) -> str:
        return f"ControlSource({self.topic!r}, start={self.start})"


def topic_end(bootstrap: str, topic: str, *, timeout_s: float = 5.0) -> dict[int, int]:
    """`{partition: high watermark}` of `topic` now (a kafka `Fault` if the broker or the topic
    is missing)."""
    marks = topic_watermarks(bootstrap, topic, timeout_s=timeout_s)
    return {p: hi for p, (_lo, hi) in marks.items()}


def control_start(
    run_dir: Path, topic: str, end: Mapping[int, int], resuming: bool
) -> dict[int, int]:
    """Where a run's control source starts when Bytewax has no snapshot of it: `end` (the
    topic's end now) at the run's first start, kept in `<run_dir>/control.json` and reused when
    the run resumes, so a run that stops or fails before its first snapshot still sees every
    command issued since it began. A resumed run must read the same topic (ValueError)."""
    path = run_dir / "control.json"
    if resuming and path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("topic") != topic:
            raise ValueError(
                f"the run in {run_dir} reads operator commands from {saved.get('topic')!r}, "
                f"not {topic!r}; resume it with the same control topic or start a new run"
            )
        return {int(p): int(o) for p, o in saved["start"].items()}
    start = dict(end)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"topic": topic, "start": start}, sort_keys=True))
    tmp.replace(path)
    return start

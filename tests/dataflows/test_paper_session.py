"""A paper run resumes only into the same flow: same engine, source, symbols and config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dataflows.paper import _session, recovery_dir
from tests.dataflows.flowkit import sma_config


def test_resume_refuses_another_engine_or_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRYPTOFLOW_DATA_DIR", str(tmp_path))
    cfg = sma_config()
    syms = ("BTCUSDT", "ETHUSDT")
    rdir, start, _, resuming = _session(cfg, "p1", "md.bars.v1", syms, 1_000)
    assert rdir == recovery_dir("p1") and start == 1_000 and not resuming
    # The same run again resumes from where it was (its own start, not the new one).
    _, start, _, resuming = _session(cfg, "p1", "md.bars.v1", syms, 9_999)
    assert resuming and start == 1_000
    with pytest.raises(ValueError, match="different symbols"):
        _session(cfg, "p1", "md.bars.v1", ("BTCUSDT",), 1_000)
    other = cfg.model_copy(update={"strategy": cfg.strategy.model_copy(update={"fast": 5})})
    with pytest.raises(ValueError, match="different config"):
        _session(other, "p1", "md.bars.v1", syms, 1_000)
    # Snapshots written by an engine before the one-account flow do not fit its steps.
    meta = json.loads((rdir / "run.json").read_text())
    del meta["engine"]
    (rdir / "run.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="different engine"):
        _session(cfg, "p1", "md.bars.v1", syms, 1_000)

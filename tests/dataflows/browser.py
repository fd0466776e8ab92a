"""Load a local HTML file in headless Chromium and return its DOM after the scripts ran, plus
every console error and uncaught exception.

Zero dependencies: Chromium's DevTools protocol over `--remote-debugging-pipe` (JSON messages
ending in NUL on fds 3/4), so no websocket client and no browser download. The protocol tells
error levels apart (`--enable-logging=stderr` logs every console call as INFO) and reports
failed resource loads as well as script errors."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium_binary() -> str | None:
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def require_chromium() -> str:
    """The browser, or a skip loud enough that nobody mistakes it for a pass."""
    found = chromium_binary()
    if found is None:
        pytest.skip(
            "BROWSER TESTS NOT RUN: no chromium binary on PATH (looked for "
            f"{', '.join(CANDIDATES)}); install it with `apt-get install -y chromium`",
            allow_module_level=True,
        )
    return found


@dataclass(frozen=True)
class PageResult:
    dom: str
    console_errors: list[str]


class _Pipe:
    """One CDP connection over the two pipes; events are kept until someone reads them."""

    def __init__(self, write_fd: int, read_fd: int, deadline: float) -> None:
        self.w, self.r, self.deadline = write_fd, read_fd, deadline
        self.buf = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def _recv(self) -> dict[str, Any]:
        while b"\0" not in self.buf:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer in time")
            ready, _, _ = select.select([self.r], [], [], left)
            if ready:
                chunk = os.read(self.r, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self.buf += chunk
        raw, self.buf = self.buf.split(b"\0", 1)
        return json.loads(raw)  # type: ignore[no-any-return]

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self.w, json.dumps(msg).encode() + b"\0")
        while True:
            got = self._recv()
            if got.get("id") == self.next_id:
                if "error" in got:
                    raise RuntimeError(f"{method}: {got['error']}")
                return got.get("result", {})  # type: ignore[no-any-return]
            self.events.append(got)

    def wait_event(self, method: str) -> dict[str, Any]:
        for i, ev in enumerate(self.events):
            if ev.get("method") == method:
                return self.events.pop(i)
        while True:
            got = self._recv()
            if got.get("method") == method:
                return got
            self.events.append(got)


def _errors(events: list[dict[str, Any]]) -> list[str]:
    out = []
    for ev in events:
        p = ev.get("params", {})
        if ev.get("method") == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            desc = d.get("exception", {}).get("description") or d.get("text", "")
            out.append(f"uncaught: {desc} (line {d.get('lineNumber', -1) + 1})")
        elif ev.get("method") == "Runtime.consoleAPICalled" and p.get("type") in (
            "error",
            "assert",
        ):
            args = [str(a.get("value", a.get("description", ""))) for a in p.get("args", [])]
            out.append(f"console.{p['type']}: {' '.join(args)}")
        elif ev.get("method") == "Log.entryAdded" and p["entry"].get("level") == "error":
            e = p["entry"]
            out.append(f"log: {e.get('text')} {e.get('url', '')}".strip())
    return out


# Resolves once the page loaded, two frames were painted (plotly draws synchronously in
# newPlot, but schedules resize/relayout work on animation frames) and short timers had a chance
# to throw.
_SETTLE = """new Promise(done => {
  const go = () => requestAnimationFrame(() => requestAnimationFrame(
    () => setTimeout(() => done(true), %d)));
  if (document.readyState === 'complete') go(); else addEventListener('load', go);
})"""


def _high_pipe() -> tuple[int, int]:
    r, w = os.pipe()
    hr, hw = fcntl.fcntl(r, fcntl.F_DUPFD_CLOEXEC, 10), fcntl.fcntl(w, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(r)
    os.close(w)
    return hr, hw


def load_page(path: str | Path, timeout_s: float = 60.0, settle_ms: int = 300) -> PageResult:
    """Open `path` (a local file) and return its DOM once it settled, and its errors."""
    binary = require_chromium()
    url = Path(path).resolve().as_uri()
    deadline = time.monotonic() + timeout_s
    to_chrome_r, to_chrome_w = _high_pipe()
    from_chrome_r, from_chrome_w = _high_pipe()
    # Chromium reads commands from fd 3 and writes to fd 4: a tiny Python trampoline moves the
    # pipe ends there (they sit at 10 or above, so neither move clobbers the other) and execs.
    wire = (
        "import os, sys; a, b = int(sys.argv[1]), int(sys.argv[2]); os.dup2(a, 3); "
        "os.dup2(b, 4); os.close(a); os.close(b); os.execv(sys.argv[3], sys.argv[3:])"
    )
    with tempfile.TemporaryDirectory(prefix="cf-chromium-") as profile:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                wire,
                str(to_chrome_r),
                str(from_chrome_w),
                binary,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                f"--user-data-dir={profile}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(to_chrome_r, from_chrome_w),
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        cdp = _Pipe(to_chrome_w, from_chrome_r, deadline)
        try:
            target = cdp.call("Target.createTarget", url="about:blank")["targetId"]
            sid = cdp.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            for domain in ("Runtime.enable", "Log.enable", "Page.enable"):
                cdp.call(domain, session=sid)
            cdp.call("Page.navigate", session=sid, url=url)
            cdp.wait_event("Page.loadEventFired")
            settle = _SETTLE % settle_ms
            cdp.call("Runtime.evaluate", session=sid, expression=settle, awaitPromise=True)
            dom = cdp.call(
                "Runtime.evaluate",
                session=sid,
                expression="document.documentElement.outerHTML",
                returnByValue=True,
            )["result"]["value"]
            errors = _errors(cdp.events)
            # The pipe may close before the answer arrives; the kill below is the backstop.
            cdp.deadline = min(deadline, time.monotonic() + 5)
            with contextlib.suppress(RuntimeError, TimeoutError):
                cdp.call("Browser.close")
        finally:
            os.close(to_chrome_w)
            os.close(from_chrome_r)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return PageResult(dom=dom, console_errors=errors)

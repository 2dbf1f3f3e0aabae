"""A tiny Chrome DevTools Protocol client for browser tests: headless Chromium over a pipe.

`--remote-debugging-pipe` speaks CDP as NUL-terminated JSON on file descriptors 3 (to the
browser) and 4 (from it): no port, no websocket library, nothing that a closed network or a
busy machine can get in the way of. The page under test records what an analyst's browser would
complain about: console errors, uncaught exceptions, log entries (CSP violations, failed loads)
and every network request with its outcome.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

INSTALL_HINT = (
    "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium "
    "(as root, after apt-get update; `make test` does this when run as root)"
)
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,2000",
    "--remote-debugging-pipe",
)


def find_chromium() -> str | None:
    """$CHROMIUM, or a Chromium/Chrome on PATH, or Debian's /usr/bin/chromium."""
    candidates = [os.environ.get("CHROMIUM", "")]
    candidates += [shutil.which(n) or "" for n in ("chromium", "chromium-browser", "chrome")]
    candidates += ["/usr/bin/chromium"]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


class CdpError(RuntimeError):
    pass


@dataclass
class PageLog:
    """What happened while a page loaded and ran."""

    console_errors: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    log_entries: list[str] = field(default_factory=list)  # level error or warning
    requests: dict[str, str] = field(default_factory=dict)  # requestId -> url
    failed: list[str] = field(default_factory=list)  # url: why

    def problems(self) -> list[str]:
        return [*self.console_errors, *self.exceptions, *self.log_entries, *self.failed]


class Browser:
    """One headless Chromium with a fresh profile; pages are tabs in it."""

    def __init__(self, executable: str, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="proxylink-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire() -> None:  # in the child: the pipe ends become fds 3 and 4
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        self.proc = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(3, 4),
            preexec_fn=wire,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []
        self.version = self.call("Browser.getVersion")["product"]

    def close(self) -> None:
        with contextlib.suppress(CdpError, OSError):
            self.call("Browser.close")
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        for fd in (self._to_browser, self._from_browser):
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(self.profile, ignore_errors=True)

    # -- protocol

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CdpError("timed out waiting for Chromium")
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if ready:
                chunk = os.read(self._from_browser, 1 << 16)
                if not chunk:
                    raise CdpError(f"Chromium exited (code {self.proc.poll()})")
                self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return dict(json.loads(message))

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Send one command and wait for its answer; events met meanwhile are kept."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise CdpError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))
            self._events.append(reply)

    def wait_for(self, method: str, session: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while True:
            for i, event in enumerate(self._events):
                if event.get("method") == method and event.get("sessionId") == session:
                    return dict(self._events.pop(i).get("params", {}))
            self._events.append(self._read(deadline))

    def open(self, url: str) -> Page:
        """A new tab that records its console, log and network, navigated to url and loaded."""
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session)
        page = Page(self, session, target)
        self.call("Page.navigate", session, url=url)
        self.wait_for("Page.loadEventFired", session)
        # Let late console messages and resource events arrive before anyone reads the log.
        page.evaluate("new Promise(r => requestAnimationFrame(() => setTimeout(r, 50)))")
        return page

    def drain(self, session: str) -> list[dict[str, Any]]:
        mine = [e for e in self._events if e.get("sessionId") == session]
        self._events = [e for e in self._events if e.get("sessionId") != session]
        return mine


class Page:
    def __init__(self, browser: Browser, session: str, target: str) -> None:
        self.browser, self.session, self.target = browser, session, target
        self._log = PageLog()

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression (awaited if it is a promise)."""
        result = self.browser.call(
            "Runtime.evaluate",
            self.session,
            expression=expression,
            returnByValue=True,
            awaitPromise=True,
        )
        if "exceptionDetails" in result:
            raise CdpError(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    @property
    def log(self) -> PageLog:
        for event in self.browser.drain(self.session):
            self._record(event.get("method", ""), event.get("params", {}))
        return self._log

    def _record(self, method: str, p: dict[str, Any]) -> None:
        log = self._log
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert", "warning"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"])
            log.console_errors.append(f"console.{p['type']}: {args}")
        elif method == "Runtime.exceptionThrown":
            details = p["exceptionDetails"]
            thrown = details.get("exception", {}).get("description", "")
            log.exceptions.append(f"exception: {details.get('text')} {thrown}".strip())
        elif method == "Log.entryAdded" and p["entry"].get("level") in ("error", "warning"):
            entry = p["entry"]
            log.log_entries.append(f"log {entry['level']}: {entry.get('text')} {entry.get('url')}")
        elif method == "Network.requestWillBeSent":
            log.requests[p["requestId"]] = p["request"]["url"]
        elif method == "Network.loadingFailed":
            url = log.requests.get(p["requestId"], "?")
            log.failed.append(f"request failed: {url}: {p.get('errorText')}")
        elif method == "Network.responseReceived" and p["response"].get("status", 0) >= 400:
            log.failed.append(f"HTTP {p['response']['status']}: {p['response']['url']}")

    def close(self) -> None:
        self.browser.call("Target.closeTarget", targetId=self.target)

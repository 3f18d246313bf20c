"""Headless Chromium (Debian's `chromium`) for the board tests, driven over the DevTools protocol.

One browser per test module; `open(url)` loads a page and records every request it makes
(Network.requestWillBeSent), console messages (Runtime.consoleAPICalled), uncaught exceptions
(Runtime.exceptionThrown) and browser log entries (Log.entryAdded: CSP violations, failed loads).
The browser cannot reach any network: all traffic goes to a dead proxy and every host name
resolves to nothing. Every wait is bounded.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from tests.integration.wsclient import WebSocket

OFFLINE_FLAGS = ("--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
                 "--host-resolver-rules=MAP * ~NOTFOUND")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
         "--disable-extensions", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-default-apps", "--hide-scrollbars", "--mute-audio",
         "--password-store=basic", *OFFLINE_FLAGS)
START_TIMEOUT = 30.0
QUIET = 0.25  # after the load event, a page is settled once no event came for this long


def chromium() -> str | None:
    return shutil.which("chromium")


@dataclass
class PageLoad:
    url: str
    requests: list[str] = field(default_factory=list)
    console: list[tuple[str, str]] = field(default_factory=list)  # (type, text)
    exceptions: list[str] = field(default_factory=list)
    log: list[tuple[str, str]] = field(default_factory=list)  # (level, text)

    @property
    def errors(self) -> list[str]:
        return ([f"console.{t}: {m}" for t, m in self.console if t in ("error", "assert")]
                + [f"exception: {e}" for e in self.exceptions]
                + [f"log {lv}: {m}" for lv, m in self.log if lv == "error"])


class Browser:
    def __init__(self, width: int = 1280, height: int = 900):
        self.width, self.height = width, height
        self._profile = tempfile.mkdtemp(prefix="board-chromium-")
        self._proc: subprocess.Popen[bytes] | None = None
        self._ws: WebSocket | None = None
        self._next_id = 0
        self._events: list[dict[str, Any]] = []

    def __enter__(self) -> Self:
        exe = chromium()
        if exe is None:
            raise RuntimeError("chromium is not installed (apt-get install -y chromium)")
        self._proc = subprocess.Popen(
            [exe, *FLAGS, "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
             f"--user-data-dir={self._profile}", f"--window-size={self.width},{self.height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + START_TIMEOUT
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if time.monotonic() > deadline or self._proc.poll() is not None:
                self.__exit__(None, None, None)
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
            targets = json.load(resp)
        page = next(t for t in targets if t.get("type") == "page")
        self._ws = WebSocket(page["webSocketDebuggerUrl"], timeout=10)
        for method in ("Page.enable", "Runtime.enable", "Network.enable", "Log.enable"):
            self.call(method)
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False})
        return self

    def __exit__(self, *exc: object) -> None:
        if self._ws is not None:
            self._ws.close()
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        shutil.rmtree(self._profile, ignore_errors=True)

    def call(self, method: str, params: dict[str, Any] | None = None, timeout: float = 15.0) -> dict[str, Any]:
        assert self._ws is not None
        self._next_id += 1
        ident = self._next_id
        self._ws.send(json.dumps({"id": ident, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while True:
            message: dict[str, Any] = json.loads(self._ws.recv(deadline))
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            if "method" in message:
                self._events.append(message)

    def _pump(self, until: float, quiet: float | None = None) -> None:
        """Collect events until `until` (time.monotonic()), or until none came for `quiet` seconds."""
        assert self._ws is not None
        try:
            while True:
                end = until if quiet is None else min(until, time.monotonic() + quiet)
                self._events.append(json.loads(self._ws.recv(end)))
        except TimeoutError:
            pass

    def open(self, url: str, timeout: float = 20.0, settle: float = 1.0) -> PageLoad:
        """Navigate, wait for the load event (bounded), let late events arrive, report."""
        self._events.clear()
        self.call("Page.navigate", {"url": url})
        return self._wait_load(url, timeout, settle)

    def follow(self, expression: str, timeout: float = 20.0, settle: float = 1.0) -> PageLoad:
        """Run an expression that navigates (a click on a link), then wait as `open` does."""
        self._events.clear()
        self.evaluate(expression)
        load = self._wait_load(expression, timeout, settle)
        load.url = self.evaluate("location.href")
        return load

    def _wait_load(self, url: str, timeout: float, settle: float) -> PageLoad:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == "Page.loadEventFired" for e in self._events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url}: no load event within {timeout:.0f}s")
            self._pump(min(deadline, time.monotonic() + 0.2))
        self._pump(time.monotonic() + settle, quiet=QUIET)  # late events: at most `settle` seconds
        return self._report(url)

    def _report(self, url: str) -> PageLoad:
        load = PageLoad(url)
        for event in self._events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Network.requestWillBeSent":
                load.requests.append(params["request"]["url"])
            elif method == "Runtime.consoleAPICalled":
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
                load.console.append((params.get("type", ""), text))
            elif method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                load.exceptions.append(details.get("exception", {}).get("description") or details.get("text", ""))
            elif method == "Log.entryAdded":
                entry = params.get("entry", {})
                load.log.append((entry.get("level", ""), f"{entry.get('text', '')} {entry.get('url', '')}".strip()))
        return load

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r}: {result['exceptionDetails'].get('text')}")
        return result.get("result", {}).get("value")

    def screenshot(self, full_page: bool = False, scale: float = 1.0) -> bytes:
        """A PNG of the viewport (or the whole page); scale < 1 makes a smaller one to check quickly."""
        params: dict[str, Any] = {"format": "png"}
        if full_page or scale != 1.0:
            params["captureBeyondViewport"] = full_page
            size = self.call("Page.getLayoutMetrics")["cssContentSize" if full_page else "cssVisualViewport"]
            width = size.get("width", size.get("clientWidth"))
            height = size.get("height", size.get("clientHeight"))
            params["clip"] = {"x": 0, "y": 0, "width": width, "height": height, "scale": scale}
        return base64.b64decode(self.call("Page.captureScreenshot", params, timeout=30)["data"])


def run_cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[bytes]:
    """chromium without DevTools: `--screenshot=FILE` or `--dump-dom` (one page, one process)."""
    exe = chromium()
    if exe is None:
        raise RuntimeError("chromium is not installed")
    with tempfile.TemporaryDirectory(prefix="board-chromium-") as profile:
        return subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                              timeout=timeout, check=True)

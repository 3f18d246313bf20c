"""A hostile HTTP peer for the tests (a real server on 127.0.0.1, not a mock): it trickles, floods,
sends gzip bombs, keep-alive-only streams, impossible chunk sizes, or whatever a test asks.

Every behaviour is bounded on the server side too (it stops after HOSTILE_MAX_S or when the client
goes away), so a test that fails does not leave a thread writing for ever.

    with hostile_server() as peer:       # peer.url = http://127.0.0.1:PORT
        peer.mode = "trickle-body"       # or per path: peer.routes["/v1/models"] = "flood"
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HOSTILE_MAX_S = 120.0  # no behaviour runs longer than this
FLOOD_BYTES = 2 << 30  # what "flood" and "gzip-bomb" promise (lazily: never held in memory)
_BOMB: list[bytes] = []


def gzip_bomb() -> bytes:
    """gzip of FLOOD_BYTES zeros (about 2 MiB), made once per process."""
    if not _BOMB:
        z = zlib.compressobj(9, zlib.DEFLATED, 31)
        zeros = bytes(1 << 20)
        parts = [z.compress(zeros) for _ in range(FLOOD_BYTES >> 20)]
        _BOMB.append(b"".join(parts) + z.flush())
    return _BOMB[0]


MODELS = {"object": "list", "data": [{"id": "tiny", "object": "model", "max_model_len": 2048}]}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, *args) -> None:  # quiet
        pass

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(min(length, 1 << 20)) if length else b""

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._body()
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def _serve(self) -> None:
        path = self.path.split("?")[0]
        mode = self.server.routes.get(path, self.server.mode)
        self.server.hits.append(path)
        started = time.monotonic()
        try:
            if callable(mode):
                status, headers, body = mode(self, path)
                self._send(status, headers, body)
            else:
                getattr(self, "mode_" + mode.replace("-", "_"))(started)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, OSError):
            pass

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _alive(self, started: float) -> bool:
        return time.monotonic() - started < HOSTILE_MAX_S and not self.server.stopping.is_set()

    # -- behaviours ---------------------------------------------------------------------------
    def mode_models(self, started: float) -> None:
        self._send(200, {"Content-Type": "application/json"}, json.dumps(MODELS).encode())

    def mode_trickle_headers(self, started: float) -> None:
        self.wfile.write(b"HTTP/1.1 200 OK\r\n")
        while self._alive(started):
            self.wfile.write(b"X")  # a header line that never ends, a byte a second
            self.wfile.flush()
            time.sleep(1.0)

    def mode_trickle_body(self, started: float) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "100000")
        self.end_headers()
        self.wfile.write(b'{"data": [')
        while self._alive(started):
            self.wfile.write(b" ")
            self.wfile.flush()
            time.sleep(1.0)

    def mode_flood(self, started: float) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(FLOOD_BYTES))
        self.end_headers()
        piece = b'{"data": [' + b" " * ((1 << 20) - 10)
        sent = 0
        while sent < FLOOD_BYTES and self._alive(started):
            self.wfile.write(piece)
            sent += len(piece)
            piece = b" " * (1 << 20)

    def mode_flood_chunked(self, started: float) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        piece = b" " * (1 << 20)
        sent = 0
        while sent < FLOOD_BYTES and self._alive(started):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            sent += len(piece)

    def mode_gzip_bomb(self, started: float) -> None:
        bomb = gzip_bomb()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(bomb)))
        self.end_headers()
        self.wfile.write(bomb)

    def mode_chunk_overflow(self, started: float) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.write(b"f" * 40 + b"\r\n{}")
        self.wfile.flush()
        self.close_connection = True

    def mode_keepalive(self, started: float) -> None:
        """An SSE stream of nothing but comment lines, ten a second."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        line = b": keep-alive\n\n"
        while self._alive(started):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.flush()
            time.sleep(0.1)

    def mode_stall(self, started: float) -> None:
        while self._alive(started):
            time.sleep(0.2)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode: object = "models"
        self.routes: dict[str, object] = {}
        self.hits: list[str] = []
        self.stopping = threading.Event()

    def handle_error(self, request, client_address) -> None:  # a client that hung up is what we expect
        pass

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    @property
    def port(self) -> int:
        return self.server_address[1]


@contextmanager
def hostile_server() -> Iterator[_Server]:
    server = _Server()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()


# The child reports its own peak RSS (VmHWM of its address space, after exec): the kernel's ru_maxrss of a
# child carries the pages of the forked test process over the exec, which is the test runner's size.
_PEAK = """
import atexit, os, runpy, sys
def _peak():
    with open("/proc/self/status") as status, open(os.environ["HOSTILE_PEAK_FILE"], "w") as out:
        out.write(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
atexit.register(_peak)
sys.argv = ["builder", *sys.argv[1:]]
runpy.run_module("builder", run_name="__main__", alter_sys=True)
"""


def run_measured(argv: list[str], *, timeout: float, env: dict[str, str] | None = None,
                 cwd: str | Path | None = None) -> tuple[int, str, str, float, int]:
    """Run argv (BUILDER + arguments, or any command) as a child; (exit code, stdout, stderr, wall
    seconds, peak RSS in MiB of the builder process itself, 0 for another command)."""
    with tempfile.NamedTemporaryFile("r", suffix=".peak") as peak:
        if argv[:3] == BUILDER:
            argv = [sys.executable, "-c", _PEAK, *argv[3:]]
        started = time.monotonic()
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                                  env={**os.environ, **(env or {}), "HOSTILE_PEAK_FILE": peak.name})
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"{argv[3:]} still running after {timeout} s") from exc
        wall = time.monotonic() - started
        text = Path(peak.name).read_text().strip()
    return done.returncode, done.stdout, done.stderr, wall, int(text) // 1024 if text.isdigit() else 0


BUILDER = [sys.executable, "-m", "builder"]

"""Bounded HTTP over requests: every request has a connect timeout, a per-read timeout and a
whole-request deadline, and every body a cap on its decoded size.

requests' timeouts bound each recv, not the request: a peer that trickles its headers or body a byte
a second keeps a plain `session.request` alive for ever. Here a watchdog shuts the request's socket
down when its deadline passes (shutdown wakes a blocked recv; close does not): the connection class
of the session's pools registers itself, in the calling thread, with the request being made. The body
is read streamed and decoded (gzip, deflate) in pieces, counting decoded bytes, so a 2 GiB body or a
gzip bomb costs at most `max_body` bytes of memory before it is refused.

Errors are requests exceptions, so callers keep their own wording: `DeadlineExceeded` (a Timeout),
`BodyTooLarge` and `PeerBroke` (the peer broke HTTP: a bad chunk size, a truncated or undecodable
body). `reason(exc)` is the short, redacted cause for a one-line message.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from builder.safetext import shown

MiB = 1 << 20
PIECE = 64 << 10  # bytes read (and decoded) at a time


@dataclass(frozen=True, kw_only=True)
class Limits:
    """How long one request may take and how much it may bring back."""
    connect_s: float = 5.0  # TCP (and TLS) connect
    read_s: float = 60.0  # the longest silence between two reads
    total_s: float = 120.0  # the whole request: connect, headers and body
    max_body: int = 16 * MiB  # decoded bytes of the body

    def __post_init__(self) -> None:
        if min(self.connect_s, self.read_s, self.total_s) <= 0 or self.max_body <= 0:
            raise ValueError(f"bad Limits: {self}")


class DeadlineExceeded(requests.Timeout):
    """The whole request took longer than its deadline (a trickling or stalled peer)."""


class BodyTooLarge(requests.RequestException):
    """The body (decoded) is larger than the cap."""


class PeerBroke(requests.RequestException):
    """The peer broke HTTP: a bad chunk size, a truncated, undecodable or malformed body."""


# -- the watchdog: which connections the current thread's request uses ----------------------------
_active = threading.local()


def _register(conn: HTTPConnection) -> None:
    watched = getattr(_active, "watch", None)
    if watched is not None:
        watched.add(conn)


class _Watch:
    """The connections of one request; `expire` shuts their sockets down."""

    def __init__(self) -> None:
        self.conns: list[HTTPConnection] = []
        self.expired = threading.Event()
        self._lock = threading.Lock()

    def add(self, conn: HTTPConnection) -> None:
        with self._lock:
            self.conns.append(conn)
        if self.expired.is_set():
            self._shut(conn)

    def expire(self) -> None:
        self.expired.set()
        with self._lock:
            conns = list(self.conns)
        for conn in conns:
            self._shut(conn)

    @staticmethod
    def _shut(conn: HTTPConnection) -> None:
        sock = getattr(conn, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed


class _Conn(HTTPConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        _register(self)
        super().request(*args, **kwargs)


class _SConn(HTTPSConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        _register(self)
        super().request(*args, **kwargs)


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Conn


class _SPool(HTTPSConnectionPool):
    ConnectionCls = _SConn


class WatchedAdapter(HTTPAdapter):
    """An adapter whose connections the deadline watchdog can reach."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _SPool}


def session() -> requests.Session:
    """A Session for one peer: no proxy or CA variables from the environment, watched connections."""
    s = requests.Session()
    s.trust_env = False
    s.mount("http://", WatchedAdapter())
    s.mount("https://", WatchedAdapter())
    return s


@contextmanager
def deadline(seconds: float) -> Iterator[_Watch]:
    """The requests the current thread makes inside are cut when `seconds` have passed."""
    watch = _Watch()
    outer = getattr(_active, "watch", None)
    _active.watch = watch
    timer = threading.Timer(seconds, watch.expire)
    timer.daemon = True
    timer.start()
    try:
        yield watch
    finally:
        timer.cancel()
        _active.watch = outer


def send(s: requests.Session, method: str, url: str, *, limits: Limits, **kwargs: Any) -> requests.Response:
    """One request within `limits`; the returned response's body is already read (`.content`).
    Raises requests exceptions: DeadlineExceeded, BodyTooLarge, PeerBroke, or what the connect raised."""
    started = time.monotonic()
    with deadline(limits.total_s) as watch:
        try:
            reply = s.request(method, url, stream=True, timeout=(limits.connect_s, limits.read_s), **kwargs)
        except requests.RequestException:
            if watch.expired.is_set():
                raise DeadlineExceeded(f"no answer within the {limits.total_s:g} s request deadline") from None
            raise
        except (OverflowError, ValueError, urllib3.exceptions.HTTPError) as exc:
            raise PeerBroke(f"request failed ({type(exc).__name__})") from None
        try:
            reply._content = read_body(reply, limits, watch, started)  # noqa: SLF001 (requests' own cache)
        finally:
            reply.close()
    return reply


def read_body(reply: requests.Response, limits: Limits, watch: _Watch, started: float) -> bytes:
    """The decoded body, refused past `limits.max_body` decoded bytes or the deadline."""
    declared = reply.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limits.max_body and not reply.headers.get("Content-Encoding"):
        raise BodyTooLarge(f"answer of {int(declared) / MiB:.1f} MiB; at most {limits.max_body / MiB:g} MiB "
                           "are read")
    pieces: list[bytes] = []
    total = 0
    try:
        for piece in reply.raw.stream(PIECE, decode_content=True):
            total += len(piece)
            if total > limits.max_body:
                raise BodyTooLarge(f"answer larger than {limits.max_body / MiB:g} MiB (decoded); refused")
            pieces.append(piece)
            if watch.expired.is_set() or time.monotonic() - started > limits.total_s:
                raise DeadlineExceeded(f"answer unfinished after the {limits.total_s:g} s request deadline")
    except requests.RequestException:
        raise
    except (OSError, OverflowError, ValueError, urllib3.exceptions.HTTPError) as exc:
        if watch.expired.is_set():
            raise DeadlineExceeded(f"answer unfinished after the {limits.total_s:g} s request deadline") from None
        if isinstance(exc, (urllib3.exceptions.ReadTimeoutError, socket.timeout, TimeoutError)):
            raise requests.Timeout(f"silent for {limits.read_s:g} s") from None
        raise PeerBroke(f"broken answer body ({_cause(exc)})") from None
    if watch.expired.is_set():
        raise DeadlineExceeded(f"answer unfinished after the {limits.total_s:g} s request deadline")
    return b"".join(pieces)


def _cause(exc: BaseException) -> str:
    text = str(exc)
    for needle, short in (("IncompleteRead", "truncated"), ("InvalidChunkLength", "bad chunk size"),
                          ("decod", "undecodable content encoding"), ("Overflow", "chunk size overflow")):
        if needle.lower() in (text + type(exc).__name__).lower():
            return short
    return type(exc).__name__


def reason(exc: Exception) -> str:
    """The short cause of a failed request, for a one-line message (credentials redacted)."""
    if isinstance(exc, (DeadlineExceeded, BodyTooLarge, PeerBroke)):
        return shown(str(exc))
    text = str(exc)
    errno = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)  # the OS's own words: "Connection refused"
    if errno:
        return errno.group(1).strip()
    for needle, short in (("refused", "connection refused"), ("Name or service not known", "unknown host"),
                          ("name resolution", "unknown host"), ("No route", "no route to host"),
                          ("reset by peer", "connection reset"), ("timed out", "timed out"),
                          ("Read timed out", "timed out")):
        if needle in text:
            return short
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake failed"
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                        requests.exceptions.InvalidSchema)):
        return "not a usable URL"
    return type(exc).__name__

"""One streamed /v1/completions request of the sweep, bounded, with the receipt time of every chunk; and the
sweep's spec (levels, samples, tokens, timeouts, caps) that bounds it.

Every request is bounded three ways: a connect timeout, a read timeout (the longest silence between two
reads) and a whole-request deadline enforced by a watchdog that shuts the socket down, so a server that
stalls, or trickles keep-alive comments forever, costs at most `request_deadline_s`. Every loop has a cap
(lines per stream, bytes per stream). Server trouble never raises out of `stream_completion`: it is a failed
request with a one-line reason.

The stream is read with http.client rather than requests: `readline()` hands each SSE line over as soon
as it arrives whether the body is chunked or close-delimited (requests' iter_content(None) on a
close-delimited body waits for the end), the receipt time of each line is what the rates are made of,
and the socket is reachable for the watchdog. No proxy variables apply, as with trust_env=False.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass

from builder.engines import EngineModule
from builder.safetext import shown

from .prompts import MAX_DEPTH
from .serverside import BusyBounds
from .sse import RequestResult, SSEError, StreamEvent, failed, parse_sse_line, summarize_stream

# Varied prose: predictable text ("count to 200") is what n-gram speculative decoding accelerates, and a
# cache-friendly repeat is what prefix caching accelerates; neither is the decode rate users get.
SWEEP_PROMPTS: tuple[str, ...] = (
    "Explain how a refrigerator moves heat out of its interior, step by step.",
    "Write a short story about a cartographer who maps a city that changes every night.",
    "Compare the trade-offs of B-trees and LSM-trees for a write-heavy key-value store.",
    "Describe the journey of a letter posted in Lisbon to a village in northern Finland.",
    "What would change in daily life if the Moon orbited the Earth twice as fast?",
    "Draft a polite email asking a landlord to repair a leaking kitchen tap.",
    "Summarise the rules of cricket for someone who only knows baseball.",
    "Décris une journée de marché dans une petite ville de Provence.",
)
MAX_LEVELS = 16
MAX_CONCURRENCY = 512
MAX_SAMPLES = 100
MAX_LINE_BYTES = 1 << 20
# Lines that carry no event (keep-alive comments, blank lines, unknown fields) in a row, and bytes of one
# stream: a stream of only keep-alives, or of ever-growing chunks, ends on these, not on the deadline.
MAX_IDLE_LINES = 64
MAX_STREAM_BYTES_PER_TOKEN = 16 << 10


class SweepError(Exception):
    """A sample could not be measured (a request failed); the message is one line."""


@dataclass(frozen=True, kw_only=True)
class SweepSpec:
    model: str  # the served model name
    concurrency: tuple[int, ...] = (1, 2, 4, 8)
    samples: int = 5  # measured bursts per level
    warmup: int = 1  # bursts per level before measuring (new batch sizes compile or capture graphs)
    max_tokens: int = 128  # every request decodes exactly this many (ignore_eos)
    prompts: tuple[str, ...] = SWEEP_PROMPTS
    include_usage: bool = True  # ask for stream_options.include_usage (vLLM honours it)
    ignore_eos: bool = True  # send ignore_eos (the engine module says whether its server takes it)
    seed: int = 0
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 60.0  # longest silence: the header wait includes queueing and prefill
    request_deadline_s: float = 300.0  # one whole request, header to [DONE]
    depths: tuple[int, ...] = (0,)  # prompt tokens of context per level (0: the short prose prompts)
    engine: EngineModule | None = None  # whose server: where its own timing is, whether it takes token ids
    bounds: BusyBounds = BusyBounds()  # where the client's reading stops being a measurement

    def __post_init__(self) -> None:
        problems = []
        if not self.model:
            problems.append("model is empty")
        if not 0 < len(self.concurrency) <= MAX_LEVELS or any(not 0 < c <= MAX_CONCURRENCY
                                                                for c in self.concurrency):
            problems.append(f"concurrency levels must be 1..{MAX_CONCURRENCY}, at most {MAX_LEVELS} of them")
        if len(set(self.concurrency)) != len(self.concurrency):
            problems.append("concurrency levels repeat")
        if not 0 < self.samples <= MAX_SAMPLES or not 0 <= self.warmup <= MAX_SAMPLES:
            problems.append(f"samples must be 1..{MAX_SAMPLES} and warmup 0..{MAX_SAMPLES}")
        if not 2 <= self.max_tokens <= 65536:
            problems.append("max_tokens must be 2..65536 (a decode rate needs a token after the first)")
        if not self.prompts:
            problems.append("no prompts")
        if not 0 < len(self.depths) <= MAX_LEVELS or len(set(self.depths)) != len(self.depths) or \
                any(not 0 <= d <= MAX_DEPTH for d in self.depths):
            problems.append(f"depths must be 0..{MAX_DEPTH}, distinct, at most {MAX_LEVELS} of them")
        if min(self.connect_timeout_s, self.read_timeout_s, self.request_deadline_s) <= 0:
            problems.append("timeouts must be positive")
        if problems:
            raise ValueError("bad SweepSpec: " + "; ".join(problems))

    @property
    def max_lines(self) -> int:
        """Cap on SSE lines read from one stream: an event and a blank line per token, with room for
        keep-alives and a usage chunk."""
        return 4 * self.max_tokens + 256

    @property
    def max_stream_bytes(self) -> int:
        """Cap on the bytes of one stream (a chunk with usage and timings is well under 2 KiB)."""
        return MAX_STREAM_BYTES_PER_TOKEN * self.max_tokens + (1 << 20)


Prompt = str | list[int]  # text, or token ids (prompts at depth)


def request_body(spec: SweepSpec, prompt: Prompt) -> dict[str, object]:
    body: dict[str, object] = {"model": spec.model, "prompt": prompt, "max_tokens": spec.max_tokens,
                               "temperature": 0, "seed": spec.seed, "stream": True}
    if spec.ignore_eos:
        body["ignore_eos"] = True
    if spec.include_usage:
        body["stream_options"] = {"include_usage": True}
    return body


def stream_completion(base_url: str, spec: SweepSpec, prompt: Prompt) -> RequestResult:
    """One streamed completion, timed per SSE line. Never raises for server trouble."""
    url = urllib.parse.urlsplit(base_url)
    if url.scheme not in ("http", "https") or not url.hostname:
        return failed(f"not an http(s) URL: {shown(base_url)!r}")
    conn_cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    conn = conn_cls(url.hostname, url.port, timeout=spec.connect_timeout_s)
    path = url.path.rstrip("/") + "/v1/completions"
    expired = threading.Event()
    watchdog = threading.Timer(spec.request_deadline_s, _abort, args=(conn, expired))
    watchdog.daemon = True
    events: list[tuple[float, StreamEvent]] = []
    where = f"POST {path}"
    timing = spec.engine.chunk_counters if spec.engine is not None else None
    try:
        watchdog.start()
        t_sent = time.perf_counter()
        conn.request("POST", path, body=json.dumps(request_body(spec, prompt)).encode(),
                     headers={"Content-Type": "application/json", "Accept": "text/event-stream"})
        if conn.sock is not None:
            conn.sock.settimeout(spec.read_timeout_s)
        resp = conn.getresponse()
        if resp.status != 200:
            return failed(f"{where}: HTTP {resp.status}: {shown(resp.read(400).decode('utf-8', 'replace'))}")
        idle, received_bytes, last_event = 0, 0, time.perf_counter()
        for _ in range(spec.max_lines):
            raw = resp.readline(MAX_LINE_BYTES)
            received = time.perf_counter()
            if expired.is_set():  # a shut-down socket reads as EOF, or the last line came just in time
                raise TimeoutError("request deadline")
            if not raw:
                return failed(f"{where}: stream ended before data: [DONE] after {len(events)} events")
            received_bytes += len(raw)
            if received_bytes > spec.max_stream_bytes:
                return failed(f"{where}: stream larger than {spec.max_stream_bytes >> 20} MiB after "
                              f"{len(events)} events")
            event = parse_sse_line(raw.decode("utf-8", "replace"), timing)
            if event is None:  # keep-alives are not progress: they spend their own budget, and the silence's
                idle += 1
                if idle > MAX_IDLE_LINES or received - last_event > spec.read_timeout_s:
                    return failed(f"{where}: {idle} lines without an event (keep-alives only) for "
                                  f"{received - last_event:.1f} s after {len(events)} events")
                continue
            idle, last_event = 0, received
            if event.kind == "done":
                result = summarize_stream(events, t_sent=t_sent)
                if result.tokens > spec.max_tokens:  # usage of 10**6 tokens for 128 asked: not a count
                    return failed(f"{where}: the stream claims {result.tokens} tokens for max_tokens "
                                  f"{spec.max_tokens} ({result.chunks} chunks)")
                return result
            events.append((received, event))
        return failed(f"{where}: no data: [DONE] within {spec.max_lines} lines")
    except SSEError as exc:
        return failed(f"{where}: {exc}")
    except (OSError, http.client.HTTPException, ValueError, OverflowError) as exc:
        if expired.is_set():
            return failed(f"{where}: unfinished after the {spec.request_deadline_s:g} s request deadline "
                          f"({len(events)} events)")
        if isinstance(exc, (socket.timeout, TimeoutError)):
            return failed(f"{where}: silent for {spec.read_timeout_s:g} s after {len(events)} events")
        return failed(f"{where}: {type(exc).__name__}: {shown(str(exc))}")
    finally:
        watchdog.cancel()
        conn.close()


def _abort(conn: http.client.HTTPConnection, expired: threading.Event) -> None:
    """The deadline passed: wake the reading thread (shutdown interrupts a blocked recv, close does not)."""
    expired.set()
    sock = conn.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed by the reader

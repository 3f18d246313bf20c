"""The concurrency sweep client: streamed /v1/completions requests against a running OpenAI-compatible
server, c at a time, for each concurrency level; the numbers are computed in sweepreport.py and sse.py.

Every request is bounded three ways: a connect timeout, a read timeout (the longest silence between two
reads) and a whole-request deadline enforced by a watchdog that shuts the socket down, so a server that
stalls, or trickles keep-alive comments forever, costs at most `request_deadline_s`. Every loop has a cap
(lines per stream, samples per level, levels per sweep). Server trouble never raises out of
`stream_completion` or `run_sweep`: it is a failed request with a one-line reason.

Around each burst the sweep reads the server's own timing where its engine module says the server has
it (a Prometheus /metrics endpoint read before and after, or timing carried by the stream), and levels run
at each prompt depth of the spec (prompts of exact token length, prompts.py).

The stream is read with http.client rather than requests: `readline()` hands each SSE line over as soon
as it arrives whether the body is chunked or close-delimited (requests' iter_content(None) on a
close-delimited body waits for the end), the receipt time of each line is what the rates are made of,
and the socket is reachable for the watchdog. No proxy variables apply, as with trust_env=False.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests

from builder.engines import EngineModule
from builder.engines.timing import ServerCounters, prometheus_totals
from builder.net import client as net
from builder.net.client import Limits
from builder.safetext import shown
from builder.smoke.openai import ServerError, request_json

from .prompts import MAX_DEPTH, depth_prompt, token_pool
from .serverside import NOT_MEASURED, BusyBounds, Sample, client_evidence, server_decode_tps
from .sse import RequestResult, SSEError, StreamEvent, failed, parse_sse_line, summarize_stream
from .sweepreport import LevelResult, SweepResult, aggregate_decode_tps, summarize_level

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
METRICS_CAP = 8 << 20  # a Prometheus page
METRICS_DEADLINE_S = 10.0
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


def prompt_key(depth: int, concurrency: int, burst: int, index: int) -> int:
    """A key unique to one request of a sweep (warm-up bursts have negative numbers): its prompt's first tokens."""
    return int.from_bytes(hashlib.sha256(f"{depth}/{concurrency}/{burst}/{index}".encode()).digest()[:5], "big")


def run_burst(base_url: str, spec: SweepSpec, concurrency: int, burst: int, depth: int = 0,
              pool: Sequence[int] = ()) -> tuple[RequestResult, ...]:
    """`concurrency` requests started together (a barrier releases them), each with its own prompt: at depth 0
    one of the prose prompts, else `depth` token ids from the pool."""
    start = threading.Barrier(concurrency)
    first = burst * concurrency

    def one(i: int) -> RequestResult:
        prompt: Prompt = depth_prompt(pool, depth, prompt_key(depth, concurrency, burst, i)) if depth \
            else spec.prompts[(first + i) % len(spec.prompts)]
        try:
            start.wait(timeout=spec.connect_timeout_s + 5.0)
        except threading.BrokenBarrierError:
            pass  # a sibling failed to start: run anyway, the window will show it
        return stream_completion(base_url, spec, prompt)

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=f"sweep-c{concurrency}") as pool_:
        return tuple(pool_.map(one, range(concurrency)))


def read_counters(base_url: str, spec: SweepSpec) -> ServerCounters | None:
    """The server's cumulative counters from its metrics endpoint; None when it has none or did not answer."""
    engine = spec.engine
    if engine is None or engine.metrics_path is None:
        return None
    limits = Limits(connect_s=spec.connect_timeout_s, read_s=METRICS_DEADLINE_S, total_s=METRICS_DEADLINE_S,
                    max_body=METRICS_CAP)
    try:
        with net.session() as session:
            resp = net.send(session, "GET", base_url.rstrip("/") + engine.metrics_path, limits=limits)
    except (requests.RequestException, ValueError):
        return None
    if resp.status_code != 200:
        return None
    return engine.metrics_counters(prometheus_totals(resp.content.decode("utf-8", "replace")))


def sample_burst(base_url: str, spec: SweepSpec, concurrency: int, burst: int, depth: int = 0,
                 pool: Sequence[int] = ()) -> Sample:
    """One burst with the server's counters read before and after it (their difference is the burst's)."""
    before = read_counters(base_url, spec)
    requests = run_burst(base_url, spec, concurrency, burst, depth, pool)
    after = read_counters(base_url, spec) if before is not None else None
    return Sample(requests=requests, server=after - before if before is not None and after is not None else None)


def measure_sample(base_url: str, spec: SweepSpec, concurrency: int, burst: int) -> tuple[float, Sample]:
    """One sample's aggregate decode tok/s (the server's, where it timed its work) and the sample; SweepError
    when it could not be measured (what the A/B driver needs: a failed sample is not a slow one, and a
    client-side figure the client could not measure is not a figure)."""
    sample = sample_burst(base_url, spec, concurrency, burst)
    server = server_decode_tps(sample)
    if server is not None:
        return server, sample
    rate = aggregate_decode_tps(sample.requests)
    if rate is None:
        bad = next((r.error for r in sample.requests if r.status != "ok"), "no decode window")
        raise SweepError(f"{base_url} c={concurrency}: {bad}")
    evidence = client_evidence([sample], rate, None, spec.bounds)
    if evidence:
        raise SweepError(f"{base_url} c={concurrency}: {NOT_MEASURED} ({evidence})")
    return rate, sample


def warm_up(base_url: str, spec: SweepSpec, concurrency: int, depth: int = 0,
            pool: Sequence[int] = ()) -> tuple[RequestResult, ...]:
    """The warm-up bursts; the requests of the first one that failed entirely (the level ends there:
    a server that cannot warm up is not measured), else ()."""
    for burst in range(spec.warmup):
        results = run_burst(base_url, spec, concurrency, -1 - burst, depth, pool)
        if all(r.status != "ok" for r in results):
            return results
    return ()


def served_context(base_url: str, spec: SweepSpec) -> int | None:
    """The served model's context length as its engine reads /v1/models; None when unknown."""
    if spec.engine is None:
        return None
    try:
        models = request_json(base_url, "/v1/models", spec.read_timeout_s).get("data") or []
    except (ServerError, ValueError):
        return None
    entry = next((m for m in models if isinstance(m, dict) and m.get("id") == spec.model), None)
    return spec.engine.max_model_len(entry) if entry is not None else None


def depth_problem(base_url: str, spec: SweepSpec) -> tuple[tuple[int, ...], str]:
    """The token pool for prompts at depth, or why there are none ("" when no depth needs them)."""
    if not any(spec.depths):
        return (), ""
    if spec.engine is None or not spec.engine.prompt_token_ids:
        return (), "prompts at depth need a server that takes token ids (the engine module says it does not)"
    context = served_context(base_url, spec)
    if context is not None and max(spec.depths) + spec.max_tokens > context:
        return (), f"depth {max(spec.depths)} + {spec.max_tokens} tokens exceed the served context of {context}"
    try:
        return token_pool(base_url, spec.model, spec.engine, spec.prompts, spec.read_timeout_s), ""
    except (ServerError, ValueError) as exc:
        return (), f"no token pool for prompts at depth: {exc}"


def run_sweep(base_url: str, spec: SweepSpec) -> SweepResult:
    """The whole sweep, depth by depth and level by level. Server trouble shows as failed requests in the
    result; a level whose warm-up or first measured burst failed entirely is not sampled further, and the
    levels after it are not run (a dead or keep-alive-only server costs one burst); levels at a depth that
    cannot be served say why, unmeasured."""
    pool, problem = depth_problem(base_url, spec)
    levels = []
    dead = ""  # set when a level failed entirely: the levels after it are not run (a dead server costs one burst)
    for depth in spec.depths:
        for concurrency in spec.concurrency:
            if (depth and problem) or dead:
                levels.append(LevelResult(concurrency=concurrency, sample_tps=(), stream_tps_p50=None,
                                          ttft_p50_s=None, itl_p50_s=None, itl_p90_s=None, requests=0, errors=0,
                                          depth=depth, unmeasured=f"not measured: {dead or problem}"))
                continue
            samples: list[Sample] = []
            warm_failed = warm_up(base_url, spec, concurrency, depth, pool)
            if warm_failed:
                samples.append(Sample(requests=warm_failed, server=None))
            for burst in range(0 if warm_failed else spec.samples):
                samples.append(sample_burst(base_url, spec, concurrency, burst, depth, pool))
                if burst == 0 and all(r.status != "ok" for r in samples[0].requests):
                    break
            if all(r.status != "ok" for s in samples for r in s.requests):
                dead = f"every request of c={concurrency} failed ({samples[0].requests[0].error})"
            levels.append(summarize_level(concurrency, samples, depth=depth, bounds=spec.bounds))
    return SweepResult(model=spec.model, max_tokens=spec.max_tokens, levels=tuple(levels))

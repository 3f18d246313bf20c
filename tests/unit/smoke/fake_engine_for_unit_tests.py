"""A stand-in for an inference engine, for unit tests only: a real HTTP server on 127.0.0.1 (stdlib
ThreadingHTTPServer) that streams OpenAI-style /v1/completions SSE with a configurable delay per token.
It knows nothing of models; it exists because vLLM cannot run inside a unit test. Each request decodes on
its own thread, so N concurrent streams go N times as fast in aggregate (an ideally batching engine),
unless `serialize` makes the server take one request at a time (a one-slot server).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(kw_only=True)
class FakeEngineConfig:
    token_delay_s: float = 0.005  # before each token after the first
    first_token_delay_s: float = 0.002  # "prefill"
    usage: bool = True  # honour stream_options.include_usage with a final usage-only chunk
    closing_chunk: bool = False  # an extra empty chunk with finish_reason (some servers send one)
    keepalive_every: int = 0  # a ": keep-alive" comment line after every k tokens (0: never)
    stall_after: int | None = None  # stop sending after this many tokens, connection left open
    trickle: bool = False  # after stall_after tokens, send keep-alive comments forever instead of silence
    send_done: bool = True
    status: int = 200
    serialize: bool = False  # one request at a time
    served_name: str = "tiny"  # what /v1/models lists
    chunked: bool = True  # False: a close-delimited body (no Content-Length, no chunking), as HTTP/1.0 servers do
    # The burst control: decode at the same pace but hold every chunk and write them all at once at the end,
    # which is what a client starved of CPU sees (the chunks pile up in its socket and are read together).
    hold: bool = False
    timings: bool = False  # llama-server's `timings` on the last chunk, by this server's own clock
    metrics: bool = False  # vLLM-named Prometheus counters at /metrics, by this server's own clock
    prompt_delay_per_token_s: float = 0.0  # "prefill" time per prompt token, on top of first_token_delay_s


@dataclass
class FakeEngine:
    url: str
    config: FakeEngineConfig
    requests: int = 0
    bodies: list[dict[str, Any]] = field(default_factory=list)
    sent: list[list[float]] = field(default_factory=list)  # per stream: perf_counter as each token is written
    counters: dict[str, float] = field(default_factory=dict)  # what /metrics exposes (vLLM's names)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # socketserver's 5 drops SYNs of a burst of 8: a 1 s retransmit, not the engine
    engine: FakeEngine
    stop: threading.Event
    slot: threading.Lock

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that hung up (the timeout tests do) is not news


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args: object) -> None:
        pass

    def _json(self, status: int, obj: dict[str, Any]) -> None:
        payload = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        """/v1/models and /health, so the smoke checks (not only the sweep) can run against it."""
        if self.path == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": self.server.engine.config.served_name,
                                                         "object": "model", "max_model_len": 512}]})
        elif self.path == "/health":
            self._json(200, {})
        elif self.path == "/metrics" and self.server.engine.config.metrics:
            with self.server.engine.lock:
                text = "".join(f'{name}{{model_name="fake"}} {value}\n'
                               for name, value in self.server.engine.counters.items())
            payload = ("# HELP fake counters\n" + text).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        else:
            self._json(404, {"error": {"message": f"fake engine: no {self.path} here"}})

    def _plain(self, body: dict[str, Any]) -> None:
        """Non-streamed completions and chat: greedy-deterministic text, one word per token."""
        n = max(1, min(int(body.get("max_tokens", 16)), 8))
        seed = str(body.get("prompt") or body.get("messages"))
        text = "".join(f" w{(len(seed) + i) % 7}" for i in range(n))
        usage = {"prompt_tokens": 9, "completion_tokens": n, "total_tokens": 9 + n}
        if self.path == "/v1/chat/completions":
            choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text},
                                      "finish_reason": "length"}
        else:
            choice = {"index": 0, "text": text, "finish_reason": "length"}
        self._json(200, {"id": "cmpl-fake", "choices": [choice], "usage": usage})

    def do_POST(self) -> None:
        engine, cfg = self.server.engine, self.server.engine.config
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        engine.requests += 1
        engine.bodies.append(body)
        if self.path == "/tokenize":  # one id per word, from either engine's field name
            text = str(body.get("prompt", body.get("content", "")))
            self._json(200, {"tokens": [sum(map(ord, word)) % 1000 for word in text.split()]})
            return
        if cfg.status == 200 and self.path in ("/v1/completions", "/v1/chat/completions") and not body.get("stream"):
            self._plain(body)
            return
        if self.path != "/v1/completions" or cfg.status != 200 or not body.get("stream"):
            status = cfg.status if cfg.status != 200 else 404
            payload = json.dumps({"error": {"message": f"fake engine: no {self.path} here"}}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        lock = self.server.slot if cfg.serialize else contextlib.nullcontext()
        with lock:
            try:
                self._stream(body, cfg)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout under test)

    def _chunk(self, text: str) -> None:
        data = text.encode()
        data = b"%x\r\n%s\r\n" % (len(data), data) if self.server.engine.config.chunked else data
        if getattr(self, "held", None) is not None:
            self.held.append(data)  # the burst control: written together at the end
            return
        self.wfile.write(data)
        self.wfile.flush()

    def _event(self, obj: dict[str, Any]) -> None:
        self._chunk(f"data: {json.dumps(obj)}\n\n")

    def _stream(self, body: dict[str, Any], cfg: FakeEngineConfig) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        if cfg.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        n = int(body.get("max_tokens", 16))
        stop = self.server.stop
        sent: list[float] = []
        self.server.engine.sent.append(sent)
        prompt = body.get("prompt")
        prompt_n = len(prompt) if isinstance(prompt, list) else 9
        self.held: list[bytes] | None = [] if cfg.hold else None
        t_start = time.perf_counter()
        time.sleep(cfg.first_token_delay_s + prompt_n * cfg.prompt_delay_per_token_s)
        for i in range(n):
            if cfg.stall_after is not None and i >= cfg.stall_after:
                while not stop.wait(0.05 if cfg.trickle else 60):
                    if cfg.trickle:
                        self._chunk(": keep-alive\n")
                return
            if i:
                time.sleep(cfg.token_delay_s)
            last = i == n - 1 and not cfg.closing_chunk
            sent.append(time.perf_counter())
            self._event({"id": "cmpl-fake", "object": "text_completion", "model": body.get("model"),
                         "choices": [{"index": 0, "text": f" w{i}", "finish_reason": "length" if last else None}]})
            if cfg.keepalive_every and (i + 1) % cfg.keepalive_every == 0:
                self._chunk(": keep-alive\n\n")
        timings = {"prompt_n": prompt_n, "prompt_ms": 1000 * (sent[0] - t_start), "predicted_n": n,
                   "predicted_ms": 1000 * (sent[-1] - sent[0])}
        if cfg.metrics:
            with self.server.engine.lock:
                add = {"vllm:request_decode_time_seconds_count": 1, "vllm:generation_tokens_total": n,
                       "vllm:request_decode_time_seconds_sum": sent[-1] - sent[0], "vllm:prompt_tokens_total": prompt_n,
                       "vllm:request_prefill_time_seconds_sum": sent[0] - t_start}
                for name, value in add.items():
                    self.server.engine.counters[name] = self.server.engine.counters.get(name, 0) + value
        if cfg.closing_chunk:
            self._event({"choices": [{"index": 0, "text": "", "finish_reason": "length"}]})
        if cfg.usage and (body.get("stream_options") or {}).get("include_usage"):
            self._event({"choices": [], "usage": {"prompt_tokens": prompt_n, "completion_tokens": n,
                                                  "total_tokens": prompt_n + n},
                         **({"timings": timings} if cfg.timings else {})})
        if self.held is not None:
            held, self.held = self.held, None
            self.wfile.write(b"".join(held))
        if cfg.send_done:
            self._chunk("data: [DONE]\n\n")
        if cfg.chunked:
            self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


@contextlib.contextmanager
def fake_engine_for_unit_tests(**config: object) -> Iterator[FakeEngine]:
    """Serve on a free port of 127.0.0.1 for the duration of the block; stalled handlers are released."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.stop, server.slot = threading.Event(), threading.Lock()
    server.engine = FakeEngine(url=f"http://127.0.0.1:{server.server_address[1]}",
                               config=FakeEngineConfig(**config))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.engine
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

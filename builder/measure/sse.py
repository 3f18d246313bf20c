"""Server-sent events of a streamed OpenAI-style /v1/completions answer, and what one streamed request
measured (pure: no I/O; the client in sweep.py feeds it lines and receipt times).

The wire format (vLLM, SGLang, llama.cpp's server, OpenAI): one event per `data: {json}` line, events
separated by a blank line, the stream closed by `data: [DONE]`. A chunk with `choices` carries one engine
step's text; with `"stream_options": {"include_usage": true}` vLLM adds a last chunk with `"choices": []`
and `usage.completion_tokens` (with continuous usage stats every chunk carries `usage`). Lines starting
with `:` are comments (keep-alives); `event:`, `id:` and `retry:` fields are ignored. An `{"error": ...}`
object in the stream (vLLM sends one when generation fails after the 200 header) is an SSEError.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from builder.engines.timing import ServerCounters

EventKind = Literal["token", "usage", "done"]
RequestStatus = Literal["ok", "error"]
TokenSource = Literal["usage", "chunks"]


MAX_USAGE_TOKENS = 1 << 24  # a token count beyond any context length is not a count


class SSEError(ValueError):
    """A data line that is not an OpenAI completion chunk, or an error object sent inside the stream."""


@dataclass(frozen=True, kw_only=True)
class StreamEvent:
    kind: EventKind  # "token": a chunk with a choice; "usage": a chunk with usage only; "done": [DONE]
    text: str = ""
    finish_reason: str | None = None
    completion_tokens: int | None = None  # from a usage block, on any chunk that has one
    prompt_tokens: int | None = None
    server: ServerCounters | None = None  # the request's server-side timing, when this chunk carries it


@dataclass(frozen=True, kw_only=True)
class RequestResult:
    """One streamed request. Times are perf_counter seconds; `t_first`/`t_last` are absolute so that a
    sample can compute the decode window across its concurrent requests."""
    status: RequestStatus
    error: str = ""  # one line, when status is "error"
    tokens: int = 0  # completion tokens (usage when the server sent it, else token chunks)
    token_source: TokenSource = "chunks"
    chunks: int = 0  # token chunks received (> tokens' share of one per chunk under speculative decoding)
    ttft_s: float | None = None  # request sent -> first token chunk received
    t_first: float | None = None
    t_last: float | None = None
    itls_s: tuple[float, ...] = ()  # gaps between consecutive token chunks
    prompt_tokens: int | None = None  # from usage, when the server sent it
    server: ServerCounters | None = None  # what the server timed for this request (engines/timing.py)

    @property
    def decode_tokens(self) -> int:
        """Tokens after the first chunk. The first chunk is taken to carry one token (true without
        speculative decoding; with it, usage counts may put a few more tokens in the first step)."""
        return max(self.tokens - 1, 0)

    @property
    def decode_s(self) -> float:
        if self.t_first is None or self.t_last is None:
            return 0.0
        return self.t_last - self.t_first

    @property
    def decode_tps(self) -> float | None:
        """Per-stream decode rate: tokens after the first over the time after the first token."""
        if self.status != "ok" or self.decode_tokens < 1 or self.decode_s <= 0:
            return None
        return self.decode_tokens / self.decode_s


ChunkTiming = Callable[[Mapping[str, Any]], ServerCounters | None]  # the engine's reader of a chunk's timing


def parse_sse_line(line: str, timing: ChunkTiming | None = None) -> StreamEvent | None:
    """One line of the stream (with or without its line end); None for lines that carry no event.
    `timing` reads the server's own timing from a chunk, for engines that stream it."""
    line = line.rstrip("\r\n")
    if not line or line.startswith(":"):
        return None
    field, _, value = line.partition(":")
    if field != "data":
        return None  # event:, id:, retry: (and unknown fields, which the SSE spec says to ignore)
    value = value.removeprefix(" ")
    if value.strip() == "[DONE]":
        return StreamEvent(kind="done")
    try:
        obj = json.loads(value)
    except ValueError:
        raise SSEError(f"data line is not JSON: {_short(value)!r}") from None
    if not isinstance(obj, dict):
        raise SSEError(f"data line is not a JSON object: {_short(value)!r}")
    if "error" in obj:
        err = obj["error"]
        message = err.get("message", err) if isinstance(err, dict) else err
        raise SSEError(f"error in stream: {_short(str(message))}")
    usage = obj.get("usage")
    completion = usage.get("completion_tokens") if isinstance(usage, dict) else None
    if completion is not None and (not isinstance(completion, int) or isinstance(completion, bool)):
        raise SSEError(f"usage.completion_tokens is not an integer: {_short(repr(completion))}")
    if completion is not None and not 0 <= completion <= MAX_USAGE_TOKENS:
        raise SSEError(f"usage.completion_tokens {_short(str(completion), 40)} is impossible (0..{MAX_USAGE_TOKENS})")
    prompt = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    prompt = prompt if isinstance(prompt, int) and not isinstance(prompt, bool) and 0 <= prompt <= MAX_USAGE_TOKENS \
        else None
    server = timing(obj) if timing is not None else None
    choices = obj.get("choices")
    if not isinstance(choices, list):
        raise SSEError(f"chunk without a choices list: {_short(value)!r}")
    if not choices:
        if completion is None:
            raise SSEError(f"chunk with neither choices nor usage: {_short(value)!r}")
        return StreamEvent(kind="usage", completion_tokens=completion, prompt_tokens=prompt, server=server)
    choice = choices[0]
    if not isinstance(choice, dict):
        raise SSEError(f"choice is not an object: {_short(value)!r}")
    text = choice.get("text")
    if text is None and isinstance(choice.get("delta"), dict):  # a chat chunk, for completeness
        text = choice["delta"].get("content")
    return StreamEvent(kind="token", text=text if isinstance(text, str) else "",
                       finish_reason=choice.get("finish_reason"), completion_tokens=completion,
                       prompt_tokens=prompt, server=server)


def is_token(event: StreamEvent) -> bool:
    """A chunk counts as one engine step unless it is the empty closing chunk some servers send
    (text "" with a finish_reason). Empty text without one is a step whose bytes the detokeniser held back."""
    return event.kind == "token" and not (event.text == "" and event.finish_reason is not None)


def summarize_stream(events: Sequence[tuple[float, StreamEvent]], *, t_sent: float) -> RequestResult:
    """What one stream measured, from (receipt time, event) pairs in order of arrival (without [DONE])."""
    token_times = [t for t, ev in events if is_token(ev)]
    usage = [ev.completion_tokens for _, ev in events if ev.completion_tokens is not None]
    if not token_times:
        return RequestResult(status="error", error="stream carried no token chunk")
    source: TokenSource = "usage" if usage else "chunks"
    tokens = usage[-1] if usage else len(token_times)
    itls = tuple(b - a for a, b in itertools.pairwise(token_times))
    prompts = [ev.prompt_tokens for _, ev in events if ev.prompt_tokens is not None]
    servers = [ev.server for _, ev in events if ev.server is not None]
    return RequestResult(status="ok", tokens=tokens, token_source=source, chunks=len(token_times),
                         ttft_s=token_times[0] - t_sent, t_first=token_times[0], t_last=token_times[-1],
                         itls_s=itls, prompt_tokens=prompts[-1] if prompts else None,
                         server=servers[-1] if servers else None)


def failed(error: str) -> RequestResult:
    return RequestResult(status="error", error=_short(error, 200))


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."

"""Requests to a live OpenAI-compatible server (SmokeSpec, generate, chat text), each with a timeout.

The smoke checks run from the host against such a server (vLLM, llama-server) (base_url
http://127.0.0.1:PORT). Each check returns a CheckResult and never raises for server trouble:
connection refused, HTTP errors, timeouts and malformed bodies become a "fail" with one-line evidence.
Every request has a timeout and every loop a fixed count, so a check's run time is bounded.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, TypeVar, cast

import requests

from builder.checkresult import FAIL, CheckResult, one_line
from builder.engines import EngineModule
from builder.matrix.smoke_settings import DEFAULT_CONSISTENCY_NATS, Consistency, SmokeSettings, ToolRecipe
from builder.net import client as net
from builder.net.client import Limits
from builder.safetext import redact

F = TypeVar("F", bound=Callable[..., Any])
# Varied content: predictable text ("count to 200") inflates tok/s under speculative decoding and
# hides gibberish. One non-ASCII prompt exercises multi-byte detokenisation.
DEFAULT_PROMPTS: tuple[str, ...] = (
    "Summarise the causes of the 1848 revolutions in Europe in two sentences.",
    "Write a haiku about a lighthouse keeper who collects broken clocks.",
    "What is 12*17? Answer with the number only.",
    "Translate into German: the invoice was paid twice, please refund one of the payments.",
    "List three risks of running a Postgres primary on spot instances, one line each.",
    "Décris brièvement le cycle de l'eau à un enfant de huit ans.",
)
CONNECT_TIMEOUT = 5.0
MAX_ANSWER = 16 << 20  # decoded bytes of one JSON answer (a 32-token completion is a few KiB)
TOOL = {"name": "get_weather", "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}},
                       "required": ["city"], "additionalProperties": False}}
TOOL_PROMPT = "What is the weather in Paris right now? Use the get_weather tool."
# Whitespace-only strings: every token of their tokenisation is a whitespace-only token, which the
# forced recipe bans (JSON grammars allow unbounded whitespace and a random model takes it forever).
WHITESPACE_PROBES = tuple(c * k for c in " \n\t" for k in (1, 2, 4, 8)) + ("\r", "\r\n", "\n  ", "\n    ")



@dataclass(frozen=True, kw_only=True)
class SmokeSpec:
    served_name: str
    engine: EngineModule  # whose server answers: its module's smoke hooks read /v1/models, /tokenize
    max_model_len: int | None = None
    prompts: tuple[str, ...] = DEFAULT_PROMPTS
    max_tokens: int = 32
    concurrency: int = 6
    rounds: int = 3
    tools: bool = False  # the cell declares that model + parser support tool calls
    tool_recipe: ToolRecipe = "plain"  # "plain" (a real model) | "forced" (random weights: see check_tool_call)
    seed: int = 0
    timeout: float = 60.0  # read timeout of one request, seconds
    eos_text: str = "<|im_end|>"  # forced recipe: the end-of-turn token it pushes after the call
    tie_nats: float = 0.0  # determinism: the near-tie flips tolerated under concurrency (smoke/ties.py)
    consistency: Consistency = "exact"  # determinism: identical outputs, or scored by the server (teacher forcing)
    consistency_nats: float = DEFAULT_CONSISTENCY_NATS

    @classmethod
    def from_settings(cls, settings: SmokeSettings, served_name: str, engine: EngineModule) -> SmokeSpec:
        """The checks' view of the cell's settings (validated once, when matrix.yaml was loaded)."""
        return cls(served_name=served_name, engine=engine, tools=settings.tools, tool_recipe=settings.tool_recipe,
                   tie_nats=settings.determinism_tie_nats, consistency=settings.consistency,
                   consistency_nats=settings.consistency_nats)


class ServerError(Exception):
    """One request failed: no connection, timeout, non-200 status, or a body that is not a JSON object."""


def request_json(base_url: str, path: str, timeout: float, body: dict | None = None) -> dict:
    """One JSON request through the network layer: `timeout` is the whole request's deadline (and the
    longest silence); the answer is capped at MAX_ANSWER bytes, decoded."""
    method, url = ("POST" if body is not None else "GET"), base_url.rstrip("/") + path
    where = f"{method} {redact(url)}"
    limits = Limits(connect_s=CONNECT_TIMEOUT, read_s=timeout, total_s=timeout, max_body=MAX_ANSWER)
    try:
        with net.session() as session:  # one per call: Session is not thread-safe
            resp = net.send(session, method, url, json=body, limits=limits)
    except requests.Timeout:  # silent, or trickling past the deadline
        raise ServerError(f"{where}: no answer within {timeout:g} s") from None
    except requests.RequestException as exc:
        raise ServerError(f"{where}: {net.reason(exc)}") from None
    except ValueError as exc:  # a URL requests cannot use (an unclosed IPv6 bracket), a body it cannot encode
        raise ServerError(f"{where}: {one_line(str(exc), 120)}") from None
    if resp.status_code != 200:
        try:
            err = resp.json()
        except ValueError:
            err = resp.text
        message = err.get("error", err) if isinstance(err, dict) else err  # {"error": {"message"}} or flat
        message = message.get("message", message) if isinstance(message, dict) else message
        raise ServerError(f"{method} {path}: HTTP {resp.status_code}: {one_line(str(message), 160)}")
    data = resp.json()  # a ValueError here fails the check like any malformed answer
    if not isinstance(data, dict):
        raise ServerError(f"{method} {path}: not a JSON object: {one_line(resp.text, 80)!r}")
    return data


def generate(base_url: str, spec: SmokeSpec, max_tokens: int, **fields: Any) -> dict:
    """Greedy with a fixed seed, so outputs compare across rounds, requests and images.
    `prompt=` goes to /v1/completions, `messages=` to /v1/chat/completions."""
    path = "/v1/chat/completions" if "messages" in fields else "/v1/completions"
    body = {"model": spec.served_name, "max_tokens": max_tokens, "temperature": 0, "seed": spec.seed, **fields}
    return request_json(base_url, path, spec.timeout, body)


def completion_text(base_url: str, spec: SmokeSpec, prompt: str) -> str:
    return generate(base_url, spec, spec.max_tokens, prompt=prompt)["choices"][0]["text"]


def user_message(content: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": content}]


def chat_text(resp: dict) -> str:
    msg = resp["choices"][0]["message"]  # reasoning models may answer only in the reasoning field
    return msg.get("content") or msg.get("reasoning_content") or msg.get("reasoning") or ""


def guarded(name: str, fallback: Callable[[], Any] | None = None) -> Callable[[F], F]:
    """Server trouble or an unexpected response shape becomes a "fail" result, never an exception.
    Checks that return (result, value) give `fallback()` as the value then."""
    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def run(*args: Any) -> Any:
            try:
                return fn(*args)
            except (ServerError, ValueError) as exc:  # ValueError: bad JSON, or a probe that broke its promise
                why = str(exc)
            except (KeyError, IndexError, TypeError, AttributeError) as exc:
                why = f"unexpected response shape ({type(exc).__name__}: {exc})"
            result = CheckResult(name, FAIL, one_line(why), {"error": why})
            return result if fallback is None else (result, fallback())
        return cast(F, run)
    return wrap


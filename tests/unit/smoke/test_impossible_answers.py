"""Impossible answers fail the smoke checks with the value as evidence (these checks decide promotion):
a context length of 0, 10**12 or a string; completion text that is not a string; streamed usage of
10**30 tokens. Served by a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json

import pytest

from builder.checkresult import FAIL, PASS
from builder.engines import vllm
from builder.measure.stream import SweepSpec, stream_completion
from builder.smoke.checks import check_completions, check_models
from builder.smoke.openai import SmokeSpec
from tests.hostile import hostile_server

SPEC = SmokeSpec(served_name="tiny", engine=vllm, timeout=5)


def _answer(body: object):
    return lambda handler, path: (200, {"Content-Type": "application/json"}, json.dumps(body).encode())


@pytest.mark.parametrize("value, evidence", [
    (0, "max_model_len 0 is outside 1..16777216"),
    (10**12, "max_model_len 1000000000000 is outside"),
    ("4096", "max_model_len is not an integer: '4096'"),
    (True, "max_model_len is not an integer: True"),
])
def test_an_impossible_context_length_fails_the_models_check(value, evidence):
    with hostile_server() as peer:
        peer.mode = _answer({"data": [{"id": "tiny", "max_model_len": value}]})
        result = check_models(peer.url, SPEC)
    assert result.status == FAIL and evidence in result.evidence, result


def test_a_possible_context_length_passes():
    with hostile_server() as peer:
        peer.mode = _answer({"data": [{"id": "tiny", "max_model_len": 4096}]})
        assert check_models(peer.url, SPEC).status == PASS


@pytest.mark.parametrize("text", [12, None, ["a"], {"t": 1}])
def test_completion_text_that_is_not_a_string_fails(text):
    usage = {"prompt_tokens": 4, "completion_tokens": 4, "total_tokens": 8}
    with hostile_server() as peer:
        peer.mode = lambda handler, path: (200, {"Content-Type": "application/json"}, json.dumps(
            {"choices": [{"text": text, "message": {"content": "ok"}, "finish_reason": "length"}],
             "usage": usage}).encode())
        result = check_completions(peer.url, SPEC)
    assert result.status == FAIL and f"completions: the text is not a string: {text!r}" in result.evidence, result


def _stream(chunks: list[dict]) -> bytes:
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


@pytest.mark.parametrize("completion, evidence", [(10**30, "is impossible"), (10**6, "claims 1000000 tokens")])
def test_streamed_usage_beyond_what_was_asked_fails_the_request(completion, evidence):
    token = {"choices": [{"text": "x", "finish_reason": None}]}
    usage = {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": completion}}
    body = _stream([token] * 4 + [usage])
    with hostile_server() as peer:
        peer.mode = lambda handler, path: (200, {"Content-Type": "text/event-stream"}, body)
        result = stream_completion(peer.url, SweepSpec(model="tiny", max_tokens=4), "hello")
    assert result.status == "error" and evidence in result.error, result

"""Smoke checks: the pure verdicts (divergence, usage, golden), and each live
check against a scripted fake OpenAI server on loopback (server trouble must give "fail", not raise)."""

from __future__ import annotations

from builder.engines import vllm

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import pytest

from builder.checkresult import FAIL, PASS, SKIP, CheckResult
from builder.matrix.smoke_settings import SmokeSettings
from builder.smoke import tinymodel
from builder.smoke.checks import (
    check_completions,
    check_determinism,
    check_golden,
    check_models,
    check_tool_call,
    divergence,
    first_divergence,
    usage_sane,
)
from builder.smoke.openai import DEFAULT_PROMPTS, SmokeSpec

GOLDEN = {"What is 12*17?": " 204 is the answer", "Décris la pluie": " Il pleut des cordes."}


# -- pure ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("a, b, index", [
    ("abc", "abc", None), ("", "", None), ("abc", "abd", 2), ("abc", "xbc", 0),
    ("abc", "abcdef", 3), ("abcdef", "abc", 3), ("", "x", 0), ("héllo", "hèllo", 1)])
def test_first_divergence(a, b, index):
    assert first_divergence(a, b) == index


def test_divergence_line_names_prompt_index_and_snippets():
    expected = "The quick brown fox jumps over the lazy dog"
    got = "The quick brown fox jumps under the lazy dog"
    line = divergence("Tell me a pangram", expected, got, "round 2")
    assert "\n" not in line
    assert line.startswith("round 2: prompt 'Tell me a pangram' differs at char 26:")
    assert line.endswith("expected 'n fox jumps over the laz', got 'n fox jumps under the la'")


@pytest.mark.parametrize("usage, problem", [
    ({"prompt_tokens": 7, "completion_tokens": 32, "total_tokens": 39}, None),
    ({"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8}, None),
    ({"prompt_tokens": 0, "completion_tokens": 5, "total_tokens": 5}, "prompt_tokens 0 outside 1..16777216"),
    ({"prompt_tokens": 10**30, "completion_tokens": 5, "total_tokens": 10**30 + 5}, "prompt_tokens 1000000000000000000000000000000 outside"),
    ({"prompt_tokens": 7, "completion_tokens": 0, "total_tokens": 7}, "completion_tokens 0 outside 1..32"),
    ({"prompt_tokens": 7, "completion_tokens": 33, "total_tokens": 40}, "completion_tokens 33 outside 1..32"),
    ({"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 13}, "total_tokens 13 != 7 + 5"),
    ({"prompt_tokens": 7, "completion_tokens": "5", "total_tokens": 12}, "usage counts are not integers"),
    ({"prompt_tokens": True, "completion_tokens": 5, "total_tokens": 6}, "usage counts are not integers"),
    (None, "no usage block"),
])
def test_usage_sane(usage, problem):
    got = usage_sane(usage, 32)
    assert got == problem if problem is None else got.startswith(problem)


def test_golden_skips_without_record_or_for_another_model():
    none = check_golden(GOLDEN, None, "tiny-abc", None)
    assert (none.status, none.evidence) == (SKIP, "no golden outputs recorded yet for tiny-abc")
    assert check_golden(GOLDEN, {}, "tiny-abc", "tiny-abc").status == SKIP
    other = check_golden(GOLDEN, GOLDEN, "tiny-abc", "tiny-old")
    assert other.status == SKIP and "recorded for tiny-old, not tiny-abc" in other.evidence


def test_golden_passes_on_identical_outputs():
    result = check_golden(dict(GOLDEN), GOLDEN, "tiny-abc", "tiny-abc")
    assert result.status == PASS and "2/2" in result.evidence
    assert check_golden(dict(GOLDEN), GOLDEN, "tiny-abc", None).status == PASS  # record without a model id
    json.dumps(result.data)


def test_altered_golden_fails_naming_the_first_diverging_prompt():
    altered = dict(GOLDEN, **{"Décris la pluie": " Il pleut des cordées."})
    result = check_golden(GOLDEN, altered, "tiny-abc", "tiny-abc")
    assert result.status == FAIL
    assert result.evidence == ("vs golden: prompt 'Décris la pluie' differs at char 18: "
                               "expected 'eut des cordées.', got 'eut des cordes.'")
    assert result.data["prompt"] == "Décris la pluie" and result.data["expected"] == " Il pleut des cordées."


def test_golden_compares_only_prompts_that_ran():
    result = check_golden({"What is 12*17?": " 204 is the answer"}, GOLDEN, "m", "m")
    assert result.status == PASS and result.data["not_run"] == ["Décris la pluie"]
    assert check_golden({"new prompt": "x"}, GOLDEN, "m", "m").status == SKIP


def test_spec_takes_the_cells_validated_settings():
    assert SmokeSpec(served_name="tiny", engine=vllm).prompts == DEFAULT_PROMPTS and len(set(DEFAULT_PROMPTS)) == len(DEFAULT_PROMPTS)
    settings = SmokeSettings(tools=True, tool_recipe="forced")
    spec = SmokeSpec.from_settings(settings, served_name="smoke", engine=vllm)
    assert (spec.served_name, spec.tools, spec.tool_recipe) == ("smoke", True, "forced")


def test_the_cpu_cells_serve_args_match_what_the_tiny_model_was_made_for():
    """The shipped matrix serves the generated model with the length and tool parser it was built for."""
    from builder.matrix.load import load_matrix
    from tests.conftest import REPO
    matrix = load_matrix(REPO / "matrix.yaml")
    settings = matrix.engines["vllm"].smoke_for("cpu")
    args = list(settings.args)
    assert settings.model == "generated:tiny-llama"
    assert int(args[args.index("--max-model-len") + 1]) == tinymodel.SERVED["max_model_len"]
    assert args[args.index("--tool-call-parser") + 1] == tinymodel.SERVED["tool_call_parser"]
    assert tinymodel.HIDDEN // tinymodel.HEADS >= 32  # vLLM's CPU attention rejects head_dim 16
    assert tinymodel.main(["--help"]) == 2


def test_tinymodel_fingerprint_ignores_transformers_version(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"a": 1, "transformers_version": "5.19.0"}))
    (tmp_path / "model.safetensors").write_bytes(b"\x00weights")
    first = tinymodel.fingerprint(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"transformers_version": "5.20.0", "a": 1}, indent=2))
    assert tinymodel.fingerprint(tmp_path) == first
    (tmp_path / "model.safetensors").write_bytes(b"\x01weights")
    assert tinymodel.fingerprint(tmp_path) != first


# -- a scripted fake server ------------------------------------------------------------------------
class FakeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, reply: Callable[[FakeServer, str, dict], tuple[int, Any]]):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.reply, self.lock = reply, threading.Lock()
        self.calls: list[tuple[str, dict]] = []
        self.in_flight = self.max_in_flight = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def batched(self, wait: float = 1.0) -> bool:
        """Whether another request is in flight beside this one, waiting up to `wait` s for one: on two
        busy cores a concurrent batch can reach the server one by one, each done before the next."""
        deadline = time.monotonic() + wait
        while self.in_flight < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.in_flight > 1


class _Handler(BaseHTTPRequestHandler):
    def _serve(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        with self.server.lock:
            self.server.calls.append((self.path, body))
            self.server.in_flight += 1
            self.server.max_in_flight = max(self.server.max_in_flight, self.server.in_flight)
        try:
            code, payload = self.server.reply(self.server, self.path, body)
        finally:
            with self.server.lock:
                self.server.in_flight -= 1
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _serve  # noqa: N815 (http.server's naming)

    def log_message(self, *args: Any) -> None:
        pass


def _usage(n: int) -> dict:
    return {"prompt_tokens": 5, "completion_tokens": n, "total_tokens": 5 + n}


def healthy(server: FakeServer, path: str, body: dict) -> tuple[int, Any]:
    """A well-behaved tiny server: greedy text is a function of the prompt only."""
    n = body.get("max_tokens", 1)
    if path == "/v1/models":
        return 200, {"data": [{"id": "tiny", "max_model_len": 512}]}
    if path == "/v1/completions":
        time.sleep(0.05)  # keeps the concurrent requests overlapping
        text = f"out:{body['prompt'][::-1]}"
        return 200, {"choices": [{"text": text, "finish_reason": "length"}], "usage": _usage(n)}
    if path == "/tokenize":
        special = {"<|im_end|>": [5]}  # added tokens stay whole, like a real tokenizer's
        return 200, {"tokens": special.get(body["prompt"]) or [ord(c) for c in body["prompt"]]}
    if path == "/v1/chat/completions":
        message: dict[str, Any] = {"role": "assistant", "content": "hi there"}
        if body.get("tools"):
            message = {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "}"}'}}]}
        return 200, {"choices": [{"message": message, "finish_reason": "tool_calls"}], "usage": _usage(min(n, 3))}
    return 404, {"error": {"message": f"no route {path}"}}


@pytest.fixture
def serve():
    servers: list[FakeServer] = []

    def start(reply: Callable[[FakeServer, str, dict], tuple[int, Any]] = healthy) -> FakeServer:
        server = FakeServer(reply)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return server
    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


SPEC = SmokeSpec(served_name="tiny", engine=vllm, max_model_len=512, prompts=("alpha", "beta", "gamma"), concurrency=5, rounds=2,
                 tools=True, tool_recipe="forced", timeout=2)


def _all_checks(url: str, spec: SmokeSpec = SPEC) -> list[CheckResult]:
    determinism, outputs = check_determinism(url, spec)
    assert isinstance(outputs, dict)
    return [check_models(url, spec), check_completions(url, spec), determinism, check_tool_call(url, spec)]


def test_checks_pass_against_a_healthy_server(serve):
    server = serve()
    results = _all_checks(server.url)
    assert [r.status for r in results[:4]] == [PASS] * 4, results
    assert results[0].evidence == "serves 'tiny' with max_model_len 512"
    assert server.max_in_flight >= SPEC.concurrency  # the concurrent phase really overlapped
    assert results[3].evidence.startswith('get_weather({"city": "}"})')
    forced = next(body for path, body in server.calls if path == "/v1/chat/completions" and body.get("tools"))
    assert forced["tool_choice"] == "required" and forced["tools"][0]["function"]["strict"] is True
    assert forced["logit_bias"][str(ord(" "))] == -100 and forced["logit_bias"][str(ord('"'))] == 100
    assert forced["logit_bias"]["5"] == 100  # the end-of-turn token, so the call closes
    for result in results:
        json.dumps(result.data)


def test_determinism_returns_golden_map(serve):
    result, outputs = check_determinism(serve().url, SPEC)
    assert result.status == PASS and outputs == {p: f"out:{p[::-1]}" for p in SPEC.prompts}
    assert result.data["outputs"] == outputs


def test_connection_refused_fails_every_check_without_raising():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    results = _all_checks(url)
    assert {r.status for r in results} == {FAIL}
    assert all("Connection refused" in r.evidence and url in r.evidence for r in results), results
    assert check_determinism(url, SPEC)[1] == {}


def test_server_errors_and_garbage_fail_with_evidence(serve):
    broken = serve(lambda server, path, body: (500, {"error": {"message": "EngineDeadError: engine died"}}))
    results = _all_checks(broken.url)
    assert {r.status for r in results} == {FAIL}
    assert all("HTTP 500: EngineDeadError: engine died" in r.evidence for r in results), results
    garbage = serve(lambda server, path, body: (200, "<html>proxy error</html>"))
    assert {r.status for r in _all_checks(garbage.url)} == {FAIL}
    shapeless = serve(lambda server, path, body: (200, {"unexpected": True}))
    result = check_completions(shapeless.url, SPEC)
    assert result.status == FAIL and "unexpected response shape" in result.evidence


def test_a_hanging_server_times_out(serve):
    def slow(server, path, body):
        time.sleep(1.5)
        return healthy(server, path, body)
    started = time.monotonic()
    result = check_models(serve(slow).url, SmokeSpec(served_name="tiny", engine=vllm, timeout=0.3))
    assert result.status == FAIL and "no answer within 0.3 s" in result.evidence
    assert time.monotonic() - started < 1.5


def test_models_check_names_what_is_served(serve):
    url = serve().url
    missing = check_models(url, SmokeSpec(served_name="llama", engine=vllm))
    assert missing.status == FAIL and missing.evidence == "'llama' is not served; /v1/models lists 'tiny'"
    wrong_len = check_models(url, SmokeSpec(served_name="tiny", engine=vllm, max_model_len=4096))
    assert wrong_len.status == FAIL and "max_model_len 512, expected 4096" in wrong_len.evidence


def test_bad_usage_fails_completions(serve):
    def lying(server, path, body):
        code, payload = healthy(server, path, body)
        if path == "/v1/chat/completions":
            payload["usage"]["total_tokens"] += 1
        return code, payload
    result = check_completions(serve(lying).url, SPEC)
    assert result.status == FAIL and result.evidence == "chat: total_tokens 9 != 5 + 3"


def test_nondeterminism_under_concurrency_names_prompt_and_index(serve):
    def drifting(server, path, body):
        code, payload = healthy(server, path, body)
        if path == "/v1/completions" and body["prompt"] == "beta" and server.batched():
            payload["choices"][0]["text"] = "out:atXXb"  # gibberish only when batched
        return code, payload
    result, outputs = check_determinism(serve(drifting).url, SPEC)
    assert result.status == FAIL
    assert result.evidence == "5 concurrent: prompt 'beta' differs at char 6: expected 'out:ateb', got 'out:atXXb'"
    assert outputs["beta"] == "out:ateb"


def test_nondeterminism_between_rounds_is_caught(serve):
    def flaky(server, path, body):
        code, payload = healthy(server, path, body)
        if path == "/v1/completions" and sum(1 for p, b in server.calls if b.get("prompt") == "gamma") == 2:
            payload["choices"][0]["text"] += "!"
        return code, payload
    result, _ = check_determinism(serve(flaky).url, SPEC)
    assert result.status == FAIL and result.evidence.startswith("round 2: prompt 'gamma' differs at char 9")


def test_tool_call_verdicts(serve):
    assert check_tool_call("http://127.0.0.1:9", SmokeSpec(served_name="tiny", engine=vllm)).status == SKIP  # not declared: no request

    def answering(arguments: str | None):
        def reply(server, path, body):
            code, payload = healthy(server, path, body)
            if path == "/v1/chat/completions":
                calls = payload["choices"][0]["message"]
                if arguments is None:
                    payload["choices"][0] = {"message": {"content": "I cannot"}, "finish_reason": "length"}
                else:
                    calls["tool_calls"][0]["function"]["arguments"] = arguments
            return code, payload
        return reply
    plain = SmokeSpec(served_name="tiny", engine=vllm, tools=True)
    none = check_tool_call(serve(answering(None)).url, plain)
    assert none.status == FAIL and none.evidence == "no tool_calls (finish_reason 'length', content 'I cannot')"
    bad = check_tool_call(serve(answering('{"city": ')).url, plain)
    assert bad.status == FAIL and "arguments of 'get_weather' are not JSON" in bad.evidence
    assert check_tool_call(serve(answering('{"city": "Paris"}')).url, plain).status == PASS


def test_forced_recipe_needs_single_token_markers(serve):
    def multi(server, path, body):
        if path == "/tokenize":
            return 200, {"tokens": [1, 2]}
        return healthy(server, path, body)
    result = check_tool_call(serve(multi).url, SPEC)
    assert result.status == FAIL and "'\"' is 2 tokens, expected 1" in result.evidence

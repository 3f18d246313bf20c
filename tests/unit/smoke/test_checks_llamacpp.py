"""The smoke checks against a llama-server-shaped fake: where it answers differently from vLLM, the
engine module's hooks read it (context length under meta, /tokenize's `content`, the tool recipe)."""

from __future__ import annotations

from builder.engines import llamacpp, vllm

from builder.checkresult import PASS, SKIP
from builder.smoke.checks import check_models, check_tool_call
from builder.smoke.openai import SmokeSpec
from tests.unit.smoke.test_checks import healthy, serve  # noqa: F401 (the fixture)

# What llama-server b11312 answered for the tiny GGUF with -c 2048 --parallel 4 (prep measurement).
MODELS = {"object": "list", "data": [{"id": "tiny", "aliases": ["tiny"], "object": "model", "owned_by": "llamacpp",
                                      "meta": {"vocab_type": 2, "n_vocab": 1024, "n_ctx": 512, "n_ctx_train": 512}}]}


def llama_server(server, path, body):
    if path == "/v1/models":
        return 200, MODELS
    if path == "/tokenize":
        return 200, {"tokens": [ord(c) for c in body.get("content", "")]}  # {"prompt": ...} gives [] there
    return healthy(server, path, body)


def test_context_length_from_meta(serve):
    url = serve(llama_server).url
    result = check_models(url, SmokeSpec(served_name="tiny", max_model_len=512, engine=llamacpp))
    assert result.status == PASS and result.evidence == "serves 'tiny' with max_model_len 512"
    # read as vLLM would, the entry has no max_model_len
    assert check_models(url, SmokeSpec(served_name="tiny", engine=vllm)).data["models"] == {"tiny": None}


def test_forced_tool_recipe_is_a_skip_with_the_reason(serve):
    server = serve(llama_server)
    result = check_tool_call(server.url, SmokeSpec(served_name="tiny", tools=True, tool_recipe="forced", engine=llamacpp))
    assert result.status == SKIP and "lazy" in result.evidence and result.evidence.startswith("recipe forced")
    assert server.calls == []  # nothing was asked of the server


def test_plain_tool_recipe_runs_on_llamacpp(serve):
    result = check_tool_call(serve(llama_server).url, SmokeSpec(served_name="tiny", tools=True, engine=llamacpp))
    assert result.status == PASS

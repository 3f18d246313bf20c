"""llama.cpp: llama-server (OpenAI-compatible), built with CMake from the llama.cpp tree; GGUF models.

Facts measured against llama-server b11312 (the tree llama-cpp-python 0.3.36 vendors):
- /health answers 200 once the model is loaded; /v1/models lists the alias with no max_model_len,
  the context size is `meta.n_ctx_train`/`n_ctx` under data[].meta (see max_model_len below).
- /v1/completions and /v1/chat/completions with usage, `ignore_eos` and `seed`; streaming ends with
  a chunk carrying usage.
- /tokenize takes {"content": ...} (not vLLM's {"prompt": ...}) and answers {"tokens": [...]}.
- Tool calls need --jinja and are parsed from the chat template's format; the tool grammar is lazy
  (it engages only after the model itself starts a call), so a random-weight model never calls:
  vLLM's "forced" recipe (tool_choice=required + logit_bias) has nothing to force here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from builder.engines import Backend, DispatchOnly, ModelFormat, TokenScore
from builder.engines.timing import ServerCounters
from builder.errors import InputError

Cell = Any  # builder.matrix.cells.Cell; engines/ is shared and imports no stage (not even for typing)

name = "llama.cpp"
template_dir = "llamacpp"
container_port = 8080
health_path = "/health"
model_formats: tuple[ModelFormat, ...] = ("gguf",)
audit_packages: tuple[str, ...] = ()  # no Python package: the server is one binary and its libraries
audit_roots: tuple[str, ...] = ("/opt/llama.cpp/lib",)  # libggml-cuda.so* (the CUDA kernels), libggml-base, libllama, ...
audit_dispatch_only: tuple[DispatchOnly, ...] = ()
requirement_files: tuple[str, ...] = ()  # no torch
stream_ignore_eos = True  # llama-server honours ignore_eos (decodes exactly max_tokens)
stream_usage = True  # its last streamed chunk carries usage
converter_dir: str | None = "/opt/llama.cpp/convert"  # the tree's convert_hf_to_gguf.py (the template puts it)
package_dir: str | None = None  # C++ throughout: every change needs a compiled build


def server_args(*, model: str, served_name: str, port: int, extra: Sequence[str]) -> list[str]:
    """After the image's entrypoint (llama-server). `model` is the GGUF file."""
    return ["-m", model, "--host", "0.0.0.0", "--port", str(port), "--alias", served_name, *extra]


def torch_pin(tree: Path) -> str | None:
    return None


def cmake_options(cell: Cell) -> list[str]:
    """The CMake configure options of llama-server for a cell; the template renders them, and the
    GPU proof (scripts) builds with the same list. Offline, no curl/OpenSSL, no web-UI download."""
    build_vars = cell.engine_version.build_vars
    options = [
        "-DCMAKE_BUILD_TYPE=Release",
        "-DBUILD_SHARED_LIBS=ON",
        "-DGGML_NATIVE=OFF",  # portable code, not the build host's CPU
        "-DGGML_CCACHE=ON",
    ]
    if cell.arch.gpu:
        if not cell.arch.cmake_cuda_architectures:
            raise InputError(f"archs.{cell.arch.name} has no cmake_cuda_architectures (needed by {name} cells)")
        options += [
            "-DGGML_CUDA=ON",
            f"-DCMAKE_CUDA_ARCHITECTURES={cell.arch.cmake_cuda_architectures}",
            "-DGGML_CUDA_NCCL=OFF",
            # libggml-cuda needs libcuda.so.1, which only the host driver provides at run time
            "-DCMAKE_EXE_LINKER_FLAGS=-Wl,--allow-shlib-undefined",
        ]
    options += [
        "-DLLAMA_USE_PREBUILT_UI=OFF",
        "-DLLAMA_BUILD_UI=OFF",
        "-DLLAMA_OPENSSL=OFF",
        "-DLLAMA_BUILD_TESTS=OFF",
        "-DLLAMA_BUILD_EXAMPLES=OFF",
        "-DLLAMA_BUILD_APP=OFF",
    ]
    number, commit = build_vars.get("llama_build_number"), build_vars.get("llama_build_commit")
    if not commit and cell.engine_version.source.kind == "git":
        commit = cell.engine_version.source.commit[:9]
    if number:
        options.append(f"-DLLAMA_BUILD_NUMBER={number}")
    if commit:
        options.append(f"-DLLAMA_BUILD_COMMIT={commit}")
    return options


def template_vars(cell: Cell) -> dict[str, Any]:
    return {"cmake_options": cmake_options(cell)}


def release_build_vars(version: str, commit: str) -> dict[str, str]:
    """A release `b<N>` at a commit: its build number is N (the version), as upstream's CI computes it from
    the git history the build's archive lacks; without it `llama-server --version` says build 0."""
    return {"llama_build_number": version, "llama_build_commit": commit[:9]} if version.isdigit() else {}


# -- smoke hooks: where llama-server answers differently from vLLM ----------------------------------

def max_model_len(model: dict) -> int | None:
    """The context size of one /v1/models entry: llama-server has no max_model_len, it puts the
    server's context under meta.n_ctx (per slot: n_ctx / --parallel) and the trained one in n_ctx_train."""
    meta = model.get("meta") or {}
    value = meta.get("n_ctx", meta.get("n_ctx_train"))
    return value if isinstance(value, int) else None


def tokenize_body(served_name: str, text: str) -> dict:
    return {"content": text, "add_special": False}


TOOL_SKIP_REASON = ("llama-server's tool-call grammar is lazy (it engages only after the model starts a call), so a "
                    "random-weight model cannot be forced into one; tool calls are checked on cells with a real "
                    "model (tools: true with recipe plain)")


def tool_skip(recipe: str) -> str | None:
    """Why a tool recipe cannot run against this engine (None: it can)."""
    return TOOL_SKIP_REASON if recipe == "forced" else None


# llama-servers older than the tree of llama-cpp-python 0.3.36 answer HTTP 500 ("does not match the expected
# Content-only format") for an output holding malformed UTF-8, which a random model's byte tokens make at
# once: their PEG content parser failed on it (llama.cpp #27543; 0.3.36's tree replaces it with U+FFFD). A
# grammar of every code point but NUL keeps outputs valid UTF-8, so a bisect can compare such trees.
UTF8_GRAMMAR = r"root ::= [^\x00]*"


def valid_utf8_fields() -> dict[str, Any] | None:
    return {"grammar": UTF8_GRAMMAR}


# -- teacher forcing, speculative decoding, backends --------------------------------------------------
# llama-server cannot score a prompt (no prompt logprobs: llama.cpp #27174), so its cells keep the
# first-difference near-tie rule of smoke/ties.py, followed through every flip (smoke/consistency.py).
def ids_fields() -> dict[str, Any]:
    return {}


def token_ids(response: dict) -> tuple[list[int], list[int]] | None:
    return None


def score_body(served_name: str, token_ids: Sequence[int]) -> dict | None:
    return None


def token_scores(response: dict, token_ids: Sequence[int], start: int) -> list[TokenScore]:
    raise ValueError("llama-server does not score prompts")


def speculation(metrics: str) -> tuple[int, int] | None:
    return None  # llama-server's /metrics (with --metrics) has no draft counters


# "load_backend: loaded CUDA backend from .../libggml-cuda.so", "llama_model_load_from_file_impl: using device
# CUDA0 (NVIDIA H200) ...", "llama_context: flash_attn = auto -> enabled".
_LOADED = re.compile(r"load_backend: loaded ([A-Za-z0-9_-]+) backend")
_DEVICE = re.compile(r"using device ([A-Za-z0-9_-]+) \(([^)]*)\)")
_FLASH = re.compile(r"flash_attn\s*=\s*(?:\S+ -> )?([a-z]+)")


def backends(log: str) -> list[Backend]:
    found: list[Backend] = []
    for line in log.splitlines():
        text = line.strip()[-300:]
        if match := _LOADED.search(line):
            found.append(Backend(kind="device", name=match.group(1), line=text))
        elif match := _DEVICE.search(line):
            found.append(Backend(kind="device", name=f"{match.group(1)} ({match.group(2)})", line=text))
        elif match := _FLASH.search(line):
            found.append(Backend(kind="attention", name=f"flash_attn {match.group(1)}", line=text))
    unique: list[Backend] = []
    for backend in found:
        if all((b.kind, b.name) != (backend.kind, backend.name) for b in unique):
            unique.append(backend)
    return unique


# -- server-side timing (engines/timing.py) -----------------------------------------------------------
# The last streamed chunk of a /v1/completions answer carries `timings` (tools/server/server-task.cpp,
# to_json_oaicompat; server-common.h, server_slot_stats): prompt_n tokens processed (cached ones excluded,
# cache_n) in prompt_ms from the slot's start (queueing excluded); predicted_n tokens generated, of which
# the first comes from the prompt's logits, in predicted_ms from the prompt's end to the last token.
# /metrics exists only with --metrics, and its totals add nothing the per-request timings lack.
metrics_path: str | None = None
prompt_token_ids = True  # `prompt` may be a list of token ids (server-common.cpp, tokenize_input_prompts)


def metrics_counters(totals: Mapping[str, float]) -> ServerCounters | None:
    return None


def chunk_counters(chunk: Mapping[str, Any]) -> ServerCounters | None:
    timings = chunk.get("timings")
    if not isinstance(timings, Mapping):
        return None
    values: list[float] = []
    for key in ("prompt_n", "prompt_ms", "predicted_n", "predicted_ms"):
        value = timings.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
            return None
        values.append(float(value))
    prompt_n, prompt_ms, predicted_n, predicted_ms = values
    steps = max(int(predicted_n) - 1, 0)
    return ServerCounters(requests=1, prompt_tokens=int(prompt_n), prefill_s=prompt_ms / 1000,
                          decode_tokens=steps, decode_s=predicted_ms / 1000, steps=steps, step_s=predicted_ms / 1000)

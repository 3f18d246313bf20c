"""vLLM: the OpenAI-compatible server, its packages with CUDA code, where its source pins torch."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from builder.engines import Backend, BackendKind, DispatchOnly, ModelFormat, TokenScore
from builder.engines.timing import ServerCounters

Cell = Any  # builder.matrix.cells.Cell; engines/ is shared and imports no stage (not even for typing)

name = "vllm"
template_dir = "vllm"
container_port = 8000
health_path = "/health"
model_formats: tuple[ModelFormat, ...] = ("hf",)
# vLLM and the kernel libraries it loads from their own wheels.
audit_packages: tuple[str, ...] = ("vllm", "flashinfer", "flashinfer_jit_cache", "flash_attn", "xformers")
audit_roots: tuple[str, ...] = ()
# Kernels with only older-generation SASS and no PTX, found by the kernel audit in the vllm 0.20.2 wheel
# (cuobjdump --dump-elf-symbols, 2026-12-01); none of them is ever launched on a newer GPU.
audit_dispatch_only: tuple[DispatchOnly, ...] = (
    DispatchOnly(name="marlin-sm75", archs=("sm_75",),
                 kernels=("_ZN6marlin6Marlin*", "_ZN16marlin_moe_wna166Marlin*"),
                 evidence="Turing instantiations of the Marlin GEMMs (351 in _C, 351 in _moe_C), present in the "
                          "sm_75 cubins only; newer GPUs launch the instantiations built for sm_80 and later"),
    DispatchOnly(name="allspark-ampere", archs=("sm_80", "sm_86", "sm_87", "sm_89"), kernels=("_ZN8allspark*",),
                 evidence="AllSpark W8A16 GEMM: vllm/model_executor/layers/quantization/utils/allspark_utils.py "
                          "accepts only device_capability >= 80 and < 90"),
    DispatchOnly(name="rms-norm-sm75", archs=("sm_75",),
                 kernels=("_ZN4vllm25fused_add_rms_norm_kernel*",
                          "_ZN4vllm42fused_add_rms_norm_static_fp8_quant_kernel*"),
                 evidence="the non-vectorised BFloat16 overload selected by _typeConvert<BFloat16>::exists being "
                          "false below sm_80 (enable_if); sm_80 and later carry the vectorised overload"),
)
requirement_files: tuple[str, ...] = ("requirements/cuda.txt", "requirements-cuda.txt")
stream_ignore_eos = True
stream_usage = True
converter_dir: str | None = None  # serves Hugging Face directories as they are
package_dir: str | None = "vllm"
_TORCH_PIN = re.compile(r"^torch\s*==\s*([0-9][^\s;#]*)", re.MULTILINE)


def server_args(*, model: str, served_name: str, port: int, extra: Sequence[str]) -> list[str]:
    """After the image's entrypoint (python3 -m vllm.entrypoints.openai.api_server)."""
    return ["--model", model, "--served-model-name", served_name, "--host", "0.0.0.0", "--port", str(port), *extra]


def torch_pin(tree: Path) -> str | None:
    for relative in requirement_files:
        path = tree / relative
        if path.is_file():
            match = _TORCH_PIN.search(path.read_text())
            if match:
                return match.group(1)
    return None


def template_vars(cell: Cell) -> dict[str, Any]:
    return {}


def release_build_vars(version: str, commit: str) -> dict[str, str]:
    return {}  # setuptools-scm reads the version from the sdist or the tag, not from build variables


def max_model_len(model: dict) -> int | None:
    return model.get("max_model_len")


def tokenize_body(served_name: str, text: str) -> dict:
    return {"model": served_name, "prompt": text, "add_special_tokens": False}


def tool_skip(recipe: str) -> str | None:
    return None


# -- teacher forcing, speculative decoding, backends --------------------------------------------------
# vLLM's completions take `prompt` as a list of token ids; `return_token_ids: true` puts prompt_token_ids
# and token_ids in the choice; `prompt_logprobs: 1` gives, for every prompt token but the first, a dict
# keyed by token id holding the token's own logprob and the top-1 (measured on 0.20.2, ../shared/GPU.md).
def valid_utf8_fields() -> dict[str, Any] | None:
    return None  # its detokenizer replaces malformed UTF-8 by U+FFFD itself


def ids_fields() -> dict[str, Any]:
    return {"return_token_ids": True}


def _ids(value: Any) -> list[int] | None:
    if isinstance(value, list) and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in value):
        return value
    return None


def token_ids(response: dict) -> tuple[list[int], list[int]] | None:
    choice = response["choices"][0]
    prompt = _ids(choice.get("prompt_token_ids", response.get("prompt_token_ids")))
    output = _ids(choice.get("token_ids"))
    return (prompt, output) if prompt is not None and output is not None else None


def score_body(served_name: str, token_ids: Sequence[int]) -> dict | None:
    return {"model": served_name, "prompt": list(token_ids), "max_tokens": 1, "temperature": 0,
            "prompt_logprobs": 1}


def token_scores(response: dict, token_ids: Sequence[int], start: int) -> list[TokenScore]:
    entries = response["choices"][0].get("prompt_logprobs")
    if not isinstance(entries, list) or len(entries) != len(token_ids):
        raise ValueError(f"prompt_logprobs has {len(entries) if isinstance(entries, list) else 'no'} entries for "
                         f"{len(token_ids)} prompt tokens")
    scores = []
    for position in range(max(start, 1), len(token_ids)):
        entry = entries[position]
        own = entry.get(str(token_ids[position])) if isinstance(entry, dict) else None
        if not isinstance(own, dict):
            raise ValueError(f"prompt_logprobs[{position}] does not score token {token_ids[position]}")
        values = [float(v["logprob"]) for v in entry.values() if isinstance(v, dict) and "logprob" in v]
        scores.append(TokenScore(token=token_ids[position], logprob=float(own["logprob"]), best=max(values),
                                 text=str(own.get("decoded_token") or "")))
    return scores


_DRAFTED = re.compile(r"^vllm:spec_decode_num_draft_tokens_total(?:\{[^}]*\})?\s+([0-9.e+]+)\s*$", re.MULTILINE)
_ACCEPTED = re.compile(r"^vllm:spec_decode_num_accepted_tokens_total(?:\{[^}]*\})?\s+([0-9.e+]+)\s*$", re.MULTILINE)


def speculation(metrics: str) -> tuple[int, int] | None:
    drafted, accepted = _DRAFTED.findall(metrics), _ACCEPTED.findall(metrics)
    if not drafted and not accepted:
        return None
    return int(sum(float(v) for v in drafted)), int(sum(float(v) for v in accepted))


# Start-up lines that name a choice, e.g. "Using FLASH_ATTN attention backend out of potential backends: [...]",
# "Using CPU_MLA backend.", "Using TritonExperts MoE backend", "Using 'FLASHINFER_CUTLASS' MxFp8 MoE backend.",
# "Selected CutlassNvFp4... / Using MarlinLinearKernel for ...".
_BACKEND_LINES: tuple[tuple[BackendKind, re.Pattern[str]], ...] = (
    ("attention", re.compile(r"Using '?([A-Za-z0-9_]+)'? attention backend")),
    ("moe", re.compile(r"Using '?([A-Za-z0-9_]+)'? (?:[A-Za-z0-9]+ )?MoE backend")),
    ("quantization", re.compile(r"(?:Using|Selected) '?([A-Za-z0-9_]*(?:Kernel|Marlin|Cutlass|CUTLASS|Fp4|FP4|Fp8|FP8)"
                                r"[A-Za-z0-9_]*)'? (?:for|kernel|backend|GEMM)")),
    ("attention", re.compile(r"Using ([A-Z][A-Z0-9_]+) backend\.")),
)


def backends(log: str) -> list[Backend]:
    found: list[Backend] = []
    for line in log.splitlines():
        for kind, pattern in _BACKEND_LINES:
            match = pattern.search(line)
            if match:
                backend = Backend(kind=kind, name=match.group(1), line=line.strip()[-300:])
                if all((b.kind, b.name) != (backend.kind, backend.name) for b in found):
                    found.append(backend)
                break
    return found


# -- server-side timing (engines/timing.py) -----------------------------------------------------------
# vLLM's Prometheus /metrics (V1 engine): histograms of each finished request's prefill and decode time
# (vllm:request_prefill_time_seconds, vllm:request_decode_time_seconds: first token to last), the
# inter-token latency (vllm:inter_token_latency_seconds; vllm:time_per_output_token_seconds before 0.11),
# and counters of prompt and generated tokens. No per-request timing in the answer itself.
metrics_path: str | None = "/metrics"
prompt_token_ids = True  # `prompt` may be a list of token ids


def metrics_counters(totals: Mapping[str, float]) -> ServerCounters | None:
    requests = totals.get("vllm:request_decode_time_seconds_count")
    if requests is None or "vllm:generation_tokens_total" not in totals:
        return None
    itl = "vllm:inter_token_latency_seconds" if "vllm:inter_token_latency_seconds_count" in totals \
        else "vllm:time_per_output_token_seconds"
    # Every request's first token is a generation token; the decode counts start after it.
    return ServerCounters(requests=int(requests), prompt_tokens=int(totals.get("vllm:prompt_tokens_total", 0)),
                          prefill_s=totals.get("vllm:request_prefill_time_seconds_sum", 0.0),
                          decode_tokens=int(totals["vllm:generation_tokens_total"] - requests),
                          decode_s=totals.get("vllm:request_decode_time_seconds_sum", 0.0),
                          steps=int(totals.get(itl + "_count", 0)), step_s=totals.get(itl + "_sum", 0.0))


def chunk_counters(chunk: Mapping[str, Any]) -> ServerCounters | None:
    return None

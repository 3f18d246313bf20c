"""vLLM: the OpenAI-compatible server, its packages with CUDA code, where its source pins torch."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from builder.engines import DispatchOnly, ModelFormat
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


def max_model_len(model: dict) -> int | None:
    return model.get("max_model_len")


def tokenize_body(served_name: str, text: str) -> dict:
    return {"model": served_name, "prompt": text, "add_special_tokens": False}


def tool_skip(recipe: str) -> str | None:
    return None


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

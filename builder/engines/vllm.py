"""vLLM: the OpenAI-compatible server, its packages with CUDA code, where its source pins torch."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from builder.engines import ModelFormat

name = "vllm"
template_dir = "vllm"
container_port = 8000
health_path = "/health"
model_formats: tuple[ModelFormat, ...] = ("hf",)
# vLLM and the kernel libraries it loads from their own wheels.
audit_packages = ("vllm", "flashinfer", "flashinfer_jit_cache", "flash_attn", "xformers")
audit_roots: tuple[str, ...] = ()
requirement_files = ("requirements/cuda.txt", "requirements-cuda.txt")
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

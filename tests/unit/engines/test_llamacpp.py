"""The llama.cpp engine module and its matrix entries (the shipped matrix.yaml)."""

from __future__ import annotations

import pytest

from builder.engines import ENGINES, engine_module, llamacpp
from builder.errors import ConfigError
from builder.matrix.cells import expand
from builder.matrix.load import load_matrix
from builder.matrix.selection import make_selector, select_cells
from tests.conftest import REPO


@pytest.fixture(scope="module")
def matrix():
    return load_matrix(REPO / "matrix.yaml")


def test_registered_with_its_server_facts():
    module = engine_module("llama.cpp")
    assert ENGINES["llama.cpp"] is module is llamacpp
    assert (module.container_port, module.health_path, module.model_formats) == (8080, "/health", ("gguf",))
    assert module.audit_packages == () and module.audit_roots == ("/opt/llama.cpp/lib",)
    assert module.torch_pin(REPO) is None
    assert module.server_args(model="/model/tiny-f32.gguf", served_name="smoke", port=8080,
                              extra=["--parallel", "4"]) == [
        "-m", "/model/tiny-f32.gguf", "--host", "0.0.0.0", "--port", "8080", "--alias", "smoke", "--parallel", "4"]


def test_smoke_hooks():
    assert llamacpp.max_model_len({"id": "x", "meta": {"n_ctx": 512, "n_ctx_train": 4096}}) == 512
    assert llamacpp.max_model_len({"id": "x"}) is None
    assert llamacpp.tokenize_body("smoke", "hi") == {"content": "hi", "add_special": False}
    assert llamacpp.tool_skip("plain") is None and "lazy" in llamacpp.tool_skip("forced")
    vllm = engine_module("vllm")
    assert vllm.max_model_len({"max_model_len": 512}) == 512 and vllm.tool_skip("forced") is None


def test_matrix_lists_the_four_cells(matrix):
    cells = select_cells(expand(matrix), make_selector(matrix, engine=["llama.cpp"]))
    assert [(c.id, c.mode, c.platform) for c in cells] == [
        ("llama.cpp-b11312-cpu", "source", "linux/amd64"),
        ("llama.cpp-b11312-cu130-sm_90", "source", "linux/amd64"),
        ("llama.cpp-b11312-cu130-sm_120", "source", "linux/amd64"),
        ("llama.cpp-b11312-cu130-sm_121a", "source", "linux/arm64")]
    assert select_cells(expand(matrix), make_selector(matrix, engine=["llama.cpp>=11312"]))
    assert not select_cells(expand(matrix), make_selector(matrix, engine=["llama.cpp<11000"]))
    version = matrix.engines["llama.cpp"].versions["b11312"]
    assert str(version.version) == "11312" and version.source.version == "0.3.36"
    assert version.source.name == "llama-cpp-python" and version.build_vars["llama_build_commit"] == "0c1e57098"
    # vLLM's cells keep their ids: the engine default mode is per engine
    assert "vllm-0.32.0-cpu" in {c.id for c in expand(matrix).cells}


def test_cmake_options_per_arch(matrix):
    cells = {c.id: c for c in expand(matrix).cells}
    cpu = llamacpp.cmake_options(cells["llama.cpp-b11312-cpu"])
    spark = llamacpp.cmake_options(cells["llama.cpp-b11312-cu130-sm_121a"])
    assert "-DGGML_CUDA=ON" not in cpu and "-DCMAKE_CUDA_ARCHITECTURES=121a-real" in spark
    assert cpu[-2:] == spark[-2:] == ["-DLLAMA_BUILD_NUMBER=11312", "-DLLAMA_BUILD_COMMIT=0c1e57098"]


def test_matrix_rejects_a_bad_default_mode(tmp_path):
    text = (REPO / "matrix.yaml").read_text().replace("default_modes: {cpu: source, sm_90: source}",
                                                      "default_modes: {cpu: binary}")
    (tmp_path / "matrix.yaml").write_text(text)
    with pytest.raises(ConfigError, match="default_modes.cpu: unknown build mode 'binary'"):
        load_matrix(tmp_path / "matrix.yaml")


def test_a_gpu_arch_without_cmake_cuda_architectures_is_refused(matrix):
    # without the list CMake would build for its default arch: an image whose kernels miss the GPU
    import dataclasses

    from builder.errors import InputError
    cell = {c.id: c for c in expand(matrix).cells}["llama.cpp-b11312-cu130-sm_121a"]
    bare = dataclasses.replace(cell, arch=dataclasses.replace(cell.arch, cmake_cuda_architectures=None))
    with pytest.raises(InputError, match="archs.sm_121a has no cmake_cuda_architectures"):
        llamacpp.cmake_options(bare)


@pytest.mark.parametrize("value", ['"121a-real; rm -rf /"', '"$(id)"', '"sm_121a"'])
def test_cmake_cuda_architectures_is_checked_where_it_is_loaded(tmp_path, value):
    text = (REPO / "matrix.yaml").read_text()
    assert "cmake_cuda_architectures: 121a-real" in text
    path = tmp_path / "matrix.yaml"
    path.write_text(text.replace("cmake_cuda_architectures: 121a-real", f"cmake_cuda_architectures: {value}", 1))
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if "cmake_cuda_architectures" in t and value in t)
    with pytest.raises(ConfigError, match=f"matrix.yaml:{line}:.*CMake CUDA_ARCHITECTURES"):
        load_matrix(path)

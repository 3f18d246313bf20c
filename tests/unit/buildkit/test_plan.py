"""The build plan: the docker commands a build runs, and what they carry."""

from __future__ import annotations

from pathlib import Path

from builder.buildkit.plan import BuildTool, build_labels, build_step, cache_ref, cell_plan
from builder.matrix.cells import expand
from builder.matrix.load import load_matrix
from builder.names import ImageNames
from builder.patching.records import PatchPlan
from builder.render.context import render_cell

NAMES = ImageNames("127.0.0.1:5000", "f/images")


def _context(matrix_path, index=-1):
    cell = expand(load_matrix(matrix_path)).cells[index]
    return render_cell(cell, PatchPlan((), (), False))


def test_the_registry_cache_ref_exists_only_for_buildx_with_an_exporting_driver(small_matrix):
    cell_id = _context(small_matrix).cell.id
    assert cache_ref(BuildTool("buildx", cache_export=True), NAMES, cell_id) == f"{NAMES.repo}:buildcache-{cell_id}"
    assert cache_ref(BuildTool("buildx", cache_export=False), NAMES, cell_id) is None  # the `docker` driver
    assert cache_ref(BuildTool("buildkit", cache_export=True), NAMES, cell_id) is None  # no buildx at all


def test_build_step_never_exports_a_cache_the_driver_cannot_write(small_matrix):
    """Given a cache ref anyway, the step itself still refuses without an exporting driver."""
    context = _context(small_matrix)
    labels = build_labels(context, "t", "r", "d")
    ref = f"{NAMES.repo}:buildcache-x"
    for tool, expected in ((BuildTool("buildx", cache_export=True), True), (BuildTool("buildx", cache_export=False), False),
                           (BuildTool("buildkit", cache_export=True), False)):
        step = build_step(tool, context, Path("/ctx"), "img", {}, labels, Path("/iid"), ref)
        assert ("--cache-to" in step.argv) is expected and ("--cache-from" in step.argv) is expected


def test_max_jobs_reaches_the_build_but_not_the_hash_or_the_tag(small_matrix, tmp_path):
    context = _context(small_matrix, 0)
    plain = cell_plan(BuildTool("buildkit"), NAMES, context, tmp_path, {}, {}, None)
    capped = cell_plan(BuildTool("buildkit"), NAMES, context, tmp_path, {}, {}, 3)
    assert "MAX_JOBS=3" in capped.build.argv and "MAX_JOBS=3" not in plain.build.argv
    assert capped.image == plain.image == NAMES.immutable(context.cell.id, context.content_hash)
    tag = capped.build.argv[capped.build.argv.index("--tag") + 1]
    assert tag == plain.build.argv[plain.build.argv.index("--tag") + 1] == plain.image


def test_a_token_in_the_engine_git_url_reaches_no_label_or_context_file(small_matrix):
    text = small_matrix.read_text().replace("\n  vllm:\n", "\n  vllm:\n    git: https://bot:s3cret@git.example.com/o/vllm.git\n", 1)
    assert "s3cret" in text
    small_matrix.write_text(text)
    context = _context(small_matrix, 0)
    labels = build_labels(context, "t", "r", "d")
    assert labels["org.opencontainers.image.source"] == "https://git.example.com/o/vllm.git"
    step = build_step(BuildTool("buildkit"), context, Path("/ctx"), "img", {}, labels, Path("/iid"))
    assert not any("s3cret" in arg for arg in step.argv)
    assert not any(b"s3cret" in body for body in context.files.values())

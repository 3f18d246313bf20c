"""The build plan: the docker commands a build runs."""

from __future__ import annotations

from pathlib import Path

from builder.buildkit.plan import BuildTool, build_labels, build_step, cache_ref
from builder.matrix.cells import expand
from builder.matrix.load import load_matrix
from builder.names import ImageNames
from builder.patching.records import PatchPlan
from builder.render.context import render_cell


def test_registry_cache_only_with_a_driver_that_can_export(small_matrix, tmp_path):
    cell = expand(load_matrix(small_matrix)).cells[-1]
    context = render_cell(cell, PatchPlan((), (), False))
    names = ImageNames("127.0.0.1:5000", "f/images")
    labels = build_labels(context, "t", "r", "d")
    for tool, expected in ((BuildTool("buildx", cache_export=False), False), (BuildTool("buildx", cache_export=True), True),
                           (BuildTool("buildkit"), False)):
        step = build_step(tool, context, Path("/ctx"), "img", {}, labels, Path("/iid"), cache_ref(tool, names, cell.id))
        assert ("--cache-to" in step.argv) is expected


def test_max_jobs_is_passed_but_does_not_change_the_hash(small_matrix):
    cell = expand(load_matrix(small_matrix)).cells[0]
    context = render_cell(cell, PatchPlan((), (), False))
    step = build_step(BuildTool("buildkit"), context, Path("/ctx"), "img", {}, {}, Path("/iid"), None, {"MAX_JOBS": "3"})
    assert "MAX_JOBS=3" in step.argv and context.build_args["MAX_JOBS"] == ""

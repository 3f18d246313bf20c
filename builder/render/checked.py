"""Patch plans checked against real sources (side effects: fetches and extracts sources)."""

from __future__ import annotations

import dataclasses

from builder.errors import StepFailed
from builder.matrix.cells import Cell
from builder.patching.check import plan_checked
from builder.patching.records import PatchPlan, PatchRecord
from builder.patching.sources import SourceCache
from builder.render.context import RenderOptions


def checked_plan(cell: Cell, records: list[PatchRecord], options: RenderOptions,
                 cache: SourceCache | None = None) -> tuple[PatchPlan, RenderOptions]:
    """Fetch the cell's source and judge every patch against it: the plan of what will really be
    applied, and the options that carry the verified source. A conflicting patch stops the cell
    with the file and hunk that failed."""
    cache = cache or SourceCache()
    archive = cache.fetch(cell.engine_version.source)
    tree = cache.extract(archive)
    plan, conflicts = plan_checked(records, cell, tree)
    if conflicts:
        first = conflicts[0]
        more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
        raise StepFailed(f"{cell.id}: patch {first.patch_id} CONFLICT: {first.detail}{more}; "
                         f"nothing was built or pushed (see `builder patches check --versions {cell.engine_version.label}`)")
    return plan, dataclasses.replace(options, source_archive=archive.path, source_sha256=archive.sha256)

"""A CellJob: one selected cell with everything a stage needs to act on it, chosen once (pure).

Every command, `pipeline.py`, and later `builder watch`, tier-4 bisect builds and attestation start from
a CellJob rather than from a bare Cell, so the engine module and the cell's smoke settings are never
looked up again by name or defaulted somewhere downstream.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from builder.engines import EngineModule
from builder.matrix.cells import Cell
from builder.matrix.smoke_settings import SmokeSettings
from builder.patching.records import PatchPlan, PatchRecord, plan_static


@dataclass(frozen=True, kw_only=True)
class CellJob:
    cell: Cell
    engine: EngineModule  # the cell's engine module: server, audit, smoke hooks, templates
    smoke: SmokeSettings  # the cell's smoke settings (engine defaults merged with its arch's)
    patches: tuple[PatchRecord, ...]  # the engine's patch records (user's tree first, then shipped)
    template_roots: tuple[Path, ...]  # where its Dockerfile templates are looked up, in order
    needed_by: str = ""  # not selected, added because another job needs it: "model helper of CELL"

    @property
    def id(self) -> str:
        return self.cell.id

    @property
    def static_plan(self) -> PatchPlan:
        """The patch plan from the records' metadata (no upstream source at hand)."""
        return plan_static(list(self.patches), self.cell)


def make_job(cell: Cell, records: list[PatchRecord], template_roots: tuple[Path, ...],
             needed_by: str = "") -> CellJob:
    """The job of one cell; the records are every engine's, this keeps the cell's engine's."""
    return CellJob(cell=cell, engine=cell.engine.module, smoke=cell.engine.smoke_for(cell.arch.name),
                   patches=tuple(r for r in records if r.engine == cell.engine.name),
                   template_roots=template_roots, needed_by=needed_by)

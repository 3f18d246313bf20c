"""The board's inputs from the matrix: every selected cell and every excluded one (pure).

The serve command comes from the cell's engine module (builder/engines), the serve arguments from
the smoke settings the image passed with, the patch plan from the caller (the patching stage is
not the board's to import: cli/board.py hands it over as (id, sha256) and (id, verdict, reason)).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from builder.board.model import AppliedPatch, CellInput, ExcludedInput, SkippedPatch, SkipVerdict
from builder.engines import engine_module
from builder.matrix.cells import Cell, Excluded
from builder.matrix.model import Matrix

MODEL_PLACEHOLDER = "{model}"  # recipe consumers substitute the model they serve
NAME_PLACEHOLDER = "{served_name}"


@dataclass(frozen=True, kw_only=True)
class PatchPlanView:
    """A cell's patch plan as the board shows it."""
    applied: tuple[tuple[str, str], ...] = ()  # (patch id, sha256)
    skipped: tuple[tuple[str, SkipVerdict, str], ...] = ()  # (patch id, verdict, reason)


def cell_input(cell: Cell, plan: PatchPlanView = PatchPlanView()) -> CellInput:
    settings = cell.engine.smoke_for(cell.arch.name)
    engine = engine_module(cell.engine.name)
    command = engine.server_args(model=MODEL_PLACEHOLDER, served_name=NAME_PLACEHOLDER,
                                 port=engine.container_port, extra=settings.args)
    return CellInput(
        id=cell.id, engine=cell.engine.name, version=cell.engine_version.label, arch=cell.arch.name,
        cuda=cell.cuda_version, mode=cell.mode, serve_args=tuple(settings.args), serve_command=tuple(command),
        port=engine.container_port,
        patches_applied=tuple(AppliedPatch(id=i, sha256=s, note="planned") for i, s in plan.applied),
        patches_skipped=tuple(SkippedPatch(id=i, verdict=v, reason=r) for i, v, r in plan.skipped),
        regression_threshold=settings.gate.threshold)


def excluded_input(matrix: Matrix, excluded: Excluded) -> ExcludedInput:
    return ExcludedInput(id=excluded.cell_id, engine=excluded.engine, version=_label(matrix, excluded),
                         arch=excluded.arch, cuda=excluded.cuda, reason=excluded.reason,
                         rule_line=excluded.rule_line)


def _label(matrix: Matrix, excluded: Excluded) -> str:
    """The version label the cell id carries ("nightly-20261120", not its 0.34.0.dev0)."""
    engine = matrix.engines.get(excluded.engine)
    labels = [label for label in (engine.versions if engine else {})
              if excluded.cell_id.startswith(f"{excluded.engine}-{label}-")]
    return max(labels, key=len) if labels else str(excluded.version)


def board_inputs(matrix: Matrix, cells: Sequence[Cell], excluded: Iterable[Excluded],
                 plans: Mapping[str, PatchPlanView]) -> tuple[list[CellInput], list[ExcludedInput]]:
    return ([cell_input(c, plans.get(c.id, PatchPlanView())) for c in cells],
            [excluded_input(matrix, e) for e in excluded])

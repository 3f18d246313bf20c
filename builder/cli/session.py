"""What every command starts from: the workspace the options name (matrix, registry) and the cells
they select. The work itself (jobs, rendering, bases) is the jobs stage's Workspace; this only reads
the options into it."""

from __future__ import annotations

from pathlib import Path

from builder.cli.options import registry_override
from builder.jobs.job import CellJob
from builder.jobs.workspace import Workspace
from builder.matrix.cells import Cell
from builder.matrix.selection import Selector, make_selector, require_cells


class Session(Workspace):
    """The Workspace of --matrix and --registry (or BUILDER_REGISTRY), with the --arch/--cuda/--engine/--cell
    selection."""

    def __init__(self, matrix_path: Path, arch: list[str] | None = None, cuda: list[str] | None = None,
                 engine: list[str] | None = None, cell: list[str] | None = None, registry: str | None = None):
        super().__init__(matrix_path, registry_override(registry))
        self.selector: Selector = make_selector(self.matrix, arch, cuda, engine, cell)

    def cells(self) -> list[Cell]:
        return require_cells(self.expansion, self.selector)

    def selected_jobs(self) -> list[CellJob]:
        return self.jobs(self.selector)

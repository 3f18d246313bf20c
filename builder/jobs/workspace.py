"""The Workspace: a loaded matrix with its expansion, image names, patch records and base resolver,
which turns a selection into CellJobs and renders a job's build context. What every command started
from in the CLI, now a stage of its own so that watch, bisect and attestation need no CLI.

Side effects only where asked: rendering with fetch=True fetches the engine's source, resolve=True asks
the lock, the local Engine and the registry for the base's digest.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from builder import grammar
from builder.bases.choice import choose
from builder.errors import InputError
from builder.jobs.job import CellJob, make_job
from builder.matrix.cells import Cell, Expansion, expand
from builder.matrix.load import load_matrix
from builder.matrix.model import Matrix
from builder.matrix.order import build_order, check_dependencies, dependencies, our_cell
from builder.matrix.selection import Selector, require_cells
from builder.names import ImageNames
from builder.patching.records import PatchRecord, load_patches
from builder.render.context import BuildContext, RenderOptions, render_cell
from builder.shipped import patch_roots, template_roots

if TYPE_CHECKING:
    from builder.bases.resolve import BaseResolver


class Workspace:
    """A matrix and what it implies, loaded once per command."""

    def __init__(self, matrix_path: Path, registry: str | None = None):
        self.matrix: Matrix = load_matrix(matrix_path)
        self.expansion: Expansion = expand(self.matrix)
        registry = registry or self.matrix.registry
        problem = grammar.image_name(registry, self.matrix.repository)
        if problem:
            raise InputError(f"--registry: {problem}")
        self.names = ImageNames(registry, self.matrix.repository)
        check_dependencies(self.expansion, self.matrix.path, self.names.repository, self.names.registry)

    @property
    def root(self) -> Path:
        return self.matrix.directory

    @property
    def template_roots(self) -> tuple[Path, ...]:
        return template_roots(self.root)

    @functools.cached_property
    def patch_records(self) -> list[PatchRecord]:
        return load_patches(patch_roots(self.root))  # once per command, not once per cell

    def patches(self, engine: str | None = None) -> list[PatchRecord]:
        return [r for r in self.patch_records if engine is None or r.engine == engine]

    def cell(self, cell_id: str, option: str = "--cell") -> Cell:
        """A cell of the expansion by id; an unknown id is exit 2 naming the option."""
        for cell in self.expansion.cells:
            if cell.id == cell_id:
                return cell
        raise InputError(f"{option}: '{cell_id[:80]}' is not a cell of the matrix (see `builder matrix`)")

    def job(self, cell: Cell) -> CellJob:
        return make_job(cell, self.patch_records, self.template_roots)

    def jobs(self, selector: Selector) -> list[CellJob]:
        """The selected cells' jobs (none selected is exit 2, with what was excluded and why)."""
        return [self.job(cell) for cell in require_cells(self.expansion, selector)]

    def dependency_ids(self, selected: list[Cell], *, smoke: bool) -> list[str]:
        """The cells the selection needs and did not select (to ask the registry which it already has)."""
        chosen = {cell.id for cell in selected}
        ordered = build_order(selected, self.expansion, self.names.repository, self.names.registry, smoke=smoke)
        return [item.cell.id for item in ordered if item.cell.id not in chosen]

    def ordered_jobs(self, selected: list[Cell], *, smoke: bool,
                     present: frozenset[str] = frozenset()) -> list[CellJob]:
        """The selection with the cells it needs (unless `present` in the registry), each after what it
        needs; an added job says why (`needed_by`)."""
        return [make_job(item.cell, self.patch_records, self.template_roots, needed_by=item.needed_by)
                for item in build_order(selected, self.expansion, self.names.repository, self.names.registry,
                                        smoke=smoke, present=present)]

    def base_dependency(self, job: CellJob) -> str | None:
        """The cell whose image this job is built FROM, when its base is one of ours."""
        return next((d.cell_id for d in dependencies(job.cell, self.names.repository, self.names.registry, smoke=False)),
                    None)

    @functools.cached_property
    def bases(self) -> "BaseResolver":
        """Base references -> digests (lock, local Engine, registry), once per base per command.
        Imported here: the Docker SDK costs 0.3-0.5 s to import, which `builder matrix` never needs."""
        from builder.bases.resolve import BaseResolver
        from builder.oci import dockerd
        return BaseResolver(self.matrix.bases, self.names.registry, dockerd.connect)

    def render(self, job: CellJob, options: RenderOptions = RenderOptions(), fetch: bool = False,
               resolve: bool = False, built: Mapping[str, str] | None = None) -> BuildContext:
        """Render a job; with fetch, a source cell gets its verified source and a patch plan checked
        against it (a CONFLICT stops the cell here, before anything is built or any registry is asked);
        with resolve, its base is pinned to a digest, which enters the content hash. `built`: cell id ->
        digest of the image built in this run; a base that is such a cell's image is that build."""
        if fetch and job.cell.mode == "source":
            from builder.render.checked import checked_plan
            plan, options = checked_plan(job.cell, list(job.patches), options)
        else:
            plan = job.static_plan
        base_cell = our_cell(job.cell.base_image, self.names.repository, self.names.registry)
        if resolve and base_cell and built and base_cell in built:  # FROM the image this run built
            options = dataclasses.replace(options, base=choose(job.cell.base_image, built[base_cell],
                                                               origin="this run's build"))
        elif resolve:
            options = dataclasses.replace(options, base=self.bases.choice(job.cell.base_image))
        return render_cell(job.cell, plan, options, job.template_roots)

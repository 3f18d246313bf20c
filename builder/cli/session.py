"""What every command starts from: the options that select cells, and a Session holding the
matrix, its expansion, the selection and the image names."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import TYPE_CHECKING

from builder import grammar
from builder.buildkit.plan import ImageNames
from builder.cli.options import registry_override
from builder.errors import InputError
from builder.matrix.cells import Cell, expand
from builder.matrix.load import load_matrix
from builder.matrix.model import Matrix
from builder.matrix.selection import Selector, make_selector, require_cells
from builder.patching.records import PatchRecord, load_patches, plan_static
from builder.render.context import (
    BuildContext,
    RenderOptions,
    render_cell,
)
from builder.shipped import patch_roots, template_roots

if TYPE_CHECKING:
    from builder.bases.resolve import BaseResolver


class Session:
    """What every command needs: the matrix, its expansion and the selected cells."""

    def __init__(self, matrix_path: Path, arch, cuda, engine, cell, registry: str | None = None):
        self.matrix: Matrix = load_matrix(matrix_path)
        self.expansion = expand(self.matrix)
        self.selector: Selector = make_selector(self.matrix, arch, cuda, engine, cell)
        registry = registry_override(registry) or self.matrix.registry
        problem = grammar.image_name(registry, self.matrix.repository)
        if problem:
            raise InputError(f"--registry: {problem}")
        self.names = ImageNames(registry, self.matrix.repository)

    @property
    def root(self) -> Path:
        return self.matrix.directory

    @property
    def template_roots(self) -> tuple[Path, ...]:
        return template_roots(self.root)

    def cells(self) -> list[Cell]:
        return require_cells(self.expansion, self.selector)

    @functools.cached_property
    def _patch_records(self) -> list[PatchRecord]:
        return load_patches(patch_roots(self.root))  # once per command, not once per cell

    def patches(self, engine: str | None = None) -> list[PatchRecord]:
        return [r for r in self._patch_records if engine is None or r.engine == engine]

    @functools.cached_property
    def bases(self) -> "BaseResolver":
        """Base references -> digests (lock, local Engine, registry), once per base per command.
        Imported here: the Docker SDK costs 0.3-0.5 s to import, which `builder matrix` never needs."""
        from builder.bases.resolve import BaseResolver
        from builder.oci import dockerd
        return BaseResolver(self.matrix.bases, self.names.registry, dockerd.connect)

    def render(self, cell: Cell, options: RenderOptions = RenderOptions(), fetch: bool = False,
               resolve: bool = False) -> BuildContext:
        """Render a cell; with fetch, a source cell gets its verified source and a patch plan
        checked against it (a CONFLICT stops the cell here, before anything is built or any
        registry is asked); with resolve, its base is pinned to a digest, which enters the
        content hash."""
        records = self.patches(cell.engine.name)
        if fetch and cell.mode == "source":
            from builder.render.checked import checked_plan
            plan, options = checked_plan(cell, records, options)
        else:
            plan = plan_static(records, cell)
        if resolve:
            options = dataclasses.replace(options, base=self.bases.choice(cell.base_image))
        return render_cell(cell, plan, options, self.template_roots)

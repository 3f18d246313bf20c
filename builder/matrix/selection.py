"""Selectors shared by every command: --arch, --cuda, --engine SPEC, --cell GLOB."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import Version

from builder.errors import InputError
from builder.matrix.cells import Cell, Excluded, Expansion
from builder.matrix.model import Matrix


@dataclass(frozen=True)
class Selector:
    archs: tuple[str, ...] = ()
    cudas: tuple[str, ...] = ()
    engines: tuple[Requirement, ...] = ()
    cells: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = [f"--arch {a}" for a in self.archs] + [f"--cuda {c}" for c in self.cudas]
        parts += [f"--engine {e}" for e in self.engines] + [f"--cell {c}" for c in self.cells]
        return " ".join(parts) or "(no selectors)"


def _split(values: list[str] | None, option: str = "selector") -> tuple[str, ...]:
    """Accept both repeated options and comma lists: --arch sm_90 --arch cpu == --arch sm_90,cpu.
    An empty value (`--arch ''`, `--arch ,`) is an error: it must not quietly select everything."""
    out: list[str] = []
    for value in values or []:
        items = [v.strip() for v in value.split(",") if v.strip()]
        if not items:
            raise InputError(f"{option}: empty value {value!r}; name at least one (see `builder matrix`)")
        out.extend(items)
    return tuple(out)


def make_selector(matrix: Matrix, arch: list[str] | None = None, cuda: list[str] | None = None,
                  engine: list[str] | None = None, cell: list[str] | None = None) -> Selector:
    archs, cudas = _split(arch, "--arch"), _split(cuda, "--cuda")
    for name in archs:
        if name not in matrix.archs:
            raise InputError(f"--arch: unknown arch '{name}' (the matrix defines: {', '.join(matrix.archs)})")
    for name in cudas:
        if name not in matrix.cuda:
            raise InputError(f"--cuda: unknown CUDA release '{name}' (the matrix defines: {', '.join(matrix.cuda)})")
    requirements = []
    for text in _split(engine, "--engine"):
        try:
            req = Requirement(text)
        except InvalidRequirement:
            raise InputError(f"--engine: '{text}' is not an engine specifier (write e.g. vllm or 'vllm>=0.19,<0.21')") from None
        if req.name not in matrix.engines:
            raise InputError(f"--engine: unknown engine '{req.name}' (the matrix defines: {', '.join(matrix.engines)})")
        requirements.append(req)
    return Selector(archs, cudas, tuple(requirements), _split(cell, "--cell"))


def _matches(selector: Selector, cell_id: str, engine: str, version: Version, arch: str, cuda: str | None) -> bool:
    if selector.archs and arch not in selector.archs:
        return False
    if selector.cudas and cuda not in selector.cudas:
        return False
    if selector.engines and not any(
            r.name == engine and r.specifier.contains(version, prereleases=True) for r in selector.engines):
        return False
    if selector.cells and not any(fnmatch.fnmatchcase(cell_id, g) for g in selector.cells):
        return False
    return True


def select_cells(expansion: Expansion, selector: Selector) -> list[Cell]:
    return [c for c in expansion.cells
            if _matches(selector, c.id, c.engine.name, c.version, c.arch.name, c.cuda_version)]


def select_excluded(expansion: Expansion, selector: Selector) -> list[Excluded]:
    return [e for e in expansion.excluded
            if _matches(selector, e.cell_id, e.engine, e.version, e.arch, e.cuda)]


def require_cells(expansion: Expansion, selector: Selector) -> list[Cell]:
    cells = select_cells(expansion, selector)
    if not cells:
        raise InputError(f"no cell matches {selector.describe()}; run `builder matrix --explain` to see "
                         "every cell and why some are excluded")
    return cells

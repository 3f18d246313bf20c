"""Which cells need which: the dependencies between cells, checked at load, and a selection put in build
order with what it needs added (pure).

Two things make one cell need another's image: its smoke model is made in another cell's tested image
(`smoke.model_helper`: llama.cpp's GGUF comes out of the vllm cpu image, which has torch), and its base
image is another cell's friendly tag (`base: <repository>:<cell id>`). Without this the llama.cpp smoke
worked only because matrix.yaml happened to list vllm first; `builder build --cell 'llama.cpp-*' --smoke`
on a fresh registry had no helper at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from builder.errors import ConfigError
from builder.matrix.cells import Cell, Expansion

Need = Literal["model helper", "base image"]


@dataclass(frozen=True, kw_only=True)
class Dependency:
    cell_id: str  # the cell whose image is needed
    needed_by: str  # the cell that needs it
    need: Need
    line: int  # the matrix.yaml line that says so

    def reason(self) -> str:
        if self.need == "model helper":
            return f"{self.needed_by}'s smoke model is made in its image (smoke.model_helper)"
        return f"{self.needed_by} is built FROM its image (base)"


@dataclass(frozen=True, kw_only=True)
class Ordered:
    cell: Cell
    needed_by: str = ""  # empty: selected; else why it was added ("model helper of X")


def dependencies(cell: Cell, repository: str, registry: str, smoke: bool = True) -> tuple[Dependency, ...]:
    """The cells this cell needs: its base when that is one of our images, and, when its smoke runs,
    its model helper."""
    found = []
    base = our_cell(cell.base_image, repository, registry)
    if base:
        found.append(Dependency(cell_id=base, needed_by=cell.id, need="base image", line=cell.origin_line))
    settings = cell.engine.smoke_for(cell.arch.name)
    if smoke and settings.model_helper:
        found.append(Dependency(cell_id=settings.model_helper, needed_by=cell.id, need="model helper",
                                line=settings.model_helper_line or cell.origin_line))
    return tuple(found)


def our_cell(image: str, repository: str, registry: str) -> str | None:
    """The cell id when `image` is `registry/repository:<tag>`: our friendly tag, which names a cell
    (without the registry it would be a Docker Hub name, not ours).

    >>> our_cell("127.0.0.1:5000/llm-factory/images:vllm-0.32.0-cpu", "llm-factory/images", "127.0.0.1:5000")
    'vllm-0.32.0-cpu'
    >>> our_cell("llm-factory/images:vllm-0.32.0-cpu", "llm-factory/images", "127.0.0.1:5000") is None
    True
    """
    prefix = f"{registry}/{repository}:"
    return image[len(prefix):] if image.startswith(prefix) and "@" not in image else None


def base_needs(cells: Iterable[Cell], repository: str, registry: str) -> dict[str, str]:
    """cell id -> the cell whose image it is built FROM, for the cells whose base is one of ours."""
    return {cell.id: base for cell in cells if (base := our_cell(cell.base_image, repository, registry))}


def check_dependencies(expansion: Expansion, path: str, repository: str, registry: str) -> None:
    """Every dependency names a buildable cell other than itself, and none is circular: a ConfigError at
    the matrix.yaml line that names it (at load, before any command acts)."""
    cells = {cell.id: cell for cell in expansion.cells}
    excluded = {item.cell_id: item for item in expansion.excluded}
    edges: dict[str, list[Dependency]] = {}
    for cell in expansion.cells:
        for dep in dependencies(cell, repository, registry):
            what = "smoke.model_helper" if dep.need == "model helper" else "base"
            if dep.cell_id == cell.id:
                raise ConfigError(path, dep.line, f"{what} of {cell.id} is the cell itself; name another cell")
            if dep.cell_id in excluded:
                raise ConfigError(path, dep.line, f"{what} of {cell.id} is {dep.cell_id}, which is excluded "
                                                  f"({excluded[dep.cell_id].reason}); name a buildable cell")
            if dep.cell_id not in cells:
                raise ConfigError(path, dep.line, f"{what} of {cell.id} is '{dep.cell_id}', which is not a cell "
                                                  "of the matrix (see `builder matrix`)")
            edges.setdefault(cell.id, []).append(dep)
    cycle = _cycle(edges)
    if cycle:
        first = edges[cycle[0]][0]
        raise ConfigError(path, first.line, "cells need each other's images in a circle: "
                                            f"{' -> '.join(cycle + [cycle[0]])}; break one of these")


def _cycle(edges: dict[str, list[Dependency]]) -> list[str]:
    """One cycle of the dependency graph (cell ids in order), or [] (iterative DFS, bounded by the edges)."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    for start in edges:
        if state.get(start):
            continue
        path: list[str] = [start]
        pending = [iter(edges.get(start, []))]
        state[start] = 1
        while pending:
            dep = next(pending[-1], None)
            if dep is None:
                state[path.pop()] = 2
                pending.pop()
                continue
            if state.get(dep.cell_id) == 1:
                return path[path.index(dep.cell_id):]
            if not state.get(dep.cell_id):
                state[dep.cell_id] = 1
                path.append(dep.cell_id)
                pending.append(iter(edges.get(dep.cell_id, [])))
    return []


def build_order(selected: Iterable[Cell], expansion: Expansion, repository: str, registry: str, *,
                smoke: bool, present: frozenset[str] = frozenset()) -> list[Ordered]:
    """The selected cells and the cells they need (unless `present`: the registry already has their
    tested image), each after what it needs, otherwise in the selection's order. Assumes
    check_dependencies passed (no cycle)."""
    cells = {cell.id: cell for cell in expansion.cells}
    chosen = list(selected)
    needed_by: dict[str, str] = {}
    queue = list(chosen)
    while queue:  # the closure: bounded by the number of cells
        cell = queue.pop(0)
        for dep in dependencies(cell, repository, registry, smoke):
            if dep.cell_id in present or dep.cell_id in needed_by or any(c.id == dep.cell_id for c in chosen):
                continue
            needed_by[dep.cell_id] = f"{dep.need} of {dep.needed_by}"
            chosen.append(cells[dep.cell_id])
            queue.append(cells[dep.cell_id])
    out: list[Ordered] = []
    placed: set[str] = set()
    chosen_ids = {cell.id for cell in chosen}

    def place(cell: Cell) -> None:
        if cell.id in placed:
            return
        placed.add(cell.id)
        for dep in dependencies(cell, repository, registry, smoke):
            if dep.cell_id in chosen_ids:
                place(cells[dep.cell_id])
        out.append(Ordered(cell=cell, needed_by=needed_by.get(cell.id, "")))

    for cell in chosen:
        place(cell)
    return out

"""Expanding the matrix into cells, with version gating and exclusion reasons.

Pure: no I/O. A cell that cannot be built (CUDA too old for the arch, no upstream image for an
overlay, an exclude rule) is kept as an `Excluded` entry so `builder matrix --explain` can say why.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from packaging.version import Version

from builder import grammar
from builder.errors import ConfigError
from builder.matrix.model import Arch, CudaRelease, Engine, EngineVersion, ExcludeRule, Matrix, Mode
from builder.names import HASH_LENGTH

# A cell id is a tag itself (the friendly tag) and the start of its immutable tag
# `<cell id>-<HASH_LENGTH hex>`; both must fit in the 128 characters a tag holds.
CELL_ID_MAX = grammar.TAG_MAX - 1 - HASH_LENGTH


def check_cell_id(cell_id: str) -> str | None:
    problem = grammar.tag(cell_id, limit=CELL_ID_MAX)
    if problem and len(cell_id) > CELL_ID_MAX and grammar.TAG.fullmatch(cell_id[:grammar.TAG_MAX]):
        return (f"cell id {cell_id[:40]}... is {len(cell_id)} characters: its immutable tag "
                f"<cell id>-<{HASH_LENGTH}-hex hash> must fit the {grammar.TAG_MAX} a tag holds, so at most "
                f"{CELL_ID_MAX}; shorten the engine name or version label")
    return f"cell id {problem}" if problem else None


@dataclass(frozen=True)
class Cell:
    """One image to build: an engine version for an arch, CUDA release and build mode."""

    engine: Engine
    engine_version: EngineVersion
    arch: Arch
    cuda: CudaRelease | None
    mode: Mode
    base_image: str
    triton: str | None  # the Triton the engine's torch pins; decides the ptxas patch
    origin_line: int

    @property
    def id(self) -> str:
        parts = [self.engine.name, self.engine_version.label]
        if self.cuda is not None:
            parts.append(self.cuda.tag)
        parts.append(self.arch.name)
        if self.mode != self.engine.default_mode(self.arch):
            parts.append(self.mode)
        return "-".join(parts)

    @property
    def version(self) -> Version:
        return self.engine_version.version

    @property
    def cuda_version(self) -> str | None:
        return self.cuda.version if self.cuda else None

    @property
    def platform(self) -> str:
        return self.arch.platform


@dataclass(frozen=True)
class Excluded:
    cell_id: str
    reason: str
    rule_line: int  # the matrix line that excluded it
    engine: str
    version: Version
    arch: str
    cuda: str | None


@dataclass(frozen=True)
class Expansion:
    cells: tuple[Cell, ...]
    excluded: tuple[Excluded, ...]


def expand(matrix: Matrix) -> Expansion:
    cells: list[Cell] = []
    excluded: list[Excluded] = []
    seen: dict[str, int] = {}
    for rule in matrix.includes:
        engine = matrix.engines[rule.engine]
        for label in rule.versions:
            for arch_name in rule.archs:
                for cuda_name in rule.cuda:
                    arch = matrix.archs[arch_name]
                    cuda = matrix.cuda[cuda_name] if cuda_name else None
                    mode = rule.mode or engine.default_mode(arch)
                    probe = Cell(engine, engine.versions[label], arch, cuda, mode, "", None, rule.line)
                    problem = check_cell_id(probe.id)
                    if problem:
                        raise ConfigError(matrix.path, rule.line, problem)
                    if probe.id in seen:
                        raise ConfigError(matrix.path, rule.line,
                                          f"duplicate cell {probe.id} (also produced by the include at "
                                          f"line {seen[probe.id]}); remove it from one group")
                    seen[probe.id] = rule.line
                    reason = _gate(matrix, probe, rule.base)
                    if reason:
                        excluded.append(Excluded(probe.id, reason[0], reason[1], engine.name, probe.version,
                                                 arch.name, probe.cuda_version))
                        continue
                    cells.append(Cell(engine, probe.engine_version, arch, cuda, mode,
                                      rule.base or _base_image(probe), _triton(matrix, probe), rule.line))
    return Expansion(tuple(cells), tuple(excluded))


def _base_image(cell: Cell) -> str:
    if cell.mode == "overlay":
        return cell.engine_version.images.get(cell.arch.name, "")
    bases = cell.cuda.bases if cell.cuda else cell.arch.bases
    return bases.get(cell.mode, "")


def _triton(matrix: Matrix, cell: Cell) -> str | None:
    torch = cell.engine_version.torch
    return matrix.torch_triton.get(torch) if torch else None


def _gate(matrix: Matrix, cell: Cell, base_override: str | None) -> tuple[str, int] | None:
    """Why this cell cannot be built, with the matrix line that says so; None if it can."""
    arch, cuda = cell.arch, cell.cuda
    if arch.min_cuda and cuda and Version(cuda.version) < arch.min_cuda:
        return (f"{arch.name} needs CUDA >= {arch.min_cuda}, cell has {cuda.version}", arch.min_cuda_line)
    if not base_override and not _base_image(cell):
        if cell.mode == "overlay":
            why = f"no upstream image pinned under engines.{cell.engine.name}.versions.{cell.engine_version.label}.images.{arch.name}"
        elif cuda:
            why = f"no {cell.mode} base image under cuda.{cuda.version}.bases"
        else:
            why = f"no {cell.mode} base image under archs.{arch.name}.bases"
        return (why, cell.origin_line)
    for rule in matrix.excludes:
        if _matches(rule, cell):
            return (rule.reason, rule.line)
    return None


def _matches(rule: ExcludeRule, cell: Cell) -> bool:
    if rule.engine and rule.engine != cell.engine.name:
        return False
    if rule.versions is not None and not rule.versions.contains(cell.version, prereleases=True):
        return False
    if rule.archs and cell.arch.name not in rule.archs:
        return False
    if rule.cuda is not None and (cell.cuda is None or not rule.cuda.contains(cell.cuda.version)):
        return False
    if rule.modes and cell.mode not in rule.modes:
        return False
    if rule.cells and not any(fnmatch.fnmatchcase(cell.id, pattern) for pattern in rule.cells):
        return False
    return True

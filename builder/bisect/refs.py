"""What --good and --bad name (pure: git is injected as a resolver).

A REF is a git revision of --repo (a sha, a branch, a tag), or an engine version of the matrix
(`0.32.0`, `b11312`): a version whose source is a git commit resolves to that commit; any other
version to the release tag upstream uses for it, `v<label>` (vLLM) or `<label>` (llama.cpp's `bNNNN`).
A version REF also names the cell of that version beside the bisected one (same engine, arch, CUDA
and mode), whose known-good image is the default good image. The same mapping, over every version
cell, is the ladder's tier 1: a candidate that is a release commit uses that release's known-good image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from builder.matrix.cells import Cell

from .errors import BisectInputError, GitError


@dataclass(frozen=True, kw_only=True)
class ResolvedRef:
    text: str  # as given
    sha: str
    version_cell: Cell | None = None  # the cell of the engine version the REF named

    @property
    def how(self) -> str:
        if self.version_cell is None:
            return f"{self.text} = {self.sha[:12]}"
        return f"{self.text} (engine version, cell {self.version_cell.id}) = {self.sha[:12]}"


def sibling_cells(cell: Cell, cells: Sequence[Cell]) -> dict[str, Cell]:
    """Version label -> the cell of that engine version with the same engine, arch, CUDA and mode."""
    return {c.engine_version.label: c for c in cells
            if c.engine.name == cell.engine.name and c.arch.name == cell.arch.name
            and c.cuda_version == cell.cuda_version and c.mode == cell.mode}


def git_names(cell: Cell) -> tuple[str, ...]:
    """The git revisions an engine version may go by, most specific first."""
    source, label = cell.engine_version.source, cell.engine_version.label
    names = [source.commit] if source.kind == "git" and source.commit else []
    return tuple(names + [f"v{label}", label])


def release_commit(version: Cell, resolve: Callable[[str], str]) -> str | None:
    """The commit of the first of the version's git names that the repository knows."""
    for name in git_names(version):
        try:
            return resolve(name)
        except GitError:
            continue
    return None


def resolve_ref(text: str, flag: str, cell: Cell, cells: Sequence[Cell],
                resolve: Callable[[str], str]) -> ResolvedRef:
    """A REF as a commit of the repository (GitError when git knows it by no name: exit 2)."""
    siblings = sibling_cells(cell, cells)
    version = siblings.get(text)
    if version is None:
        return ResolvedRef(text=text, sha=resolve(text))
    sha = release_commit(version, resolve)
    if sha is None:
        tried = " or ".join(repr(n) for n in git_names(version))
        raise BisectInputError(f"{flag}: '{text}' is an engine version of the matrix (cell {version.id}), but the "
                               f"repository has no revision {tried}: fetch its tags, or give a commit")
    return ResolvedRef(text=text, sha=sha, version_cell=version)


def version_images(cell: Cell, cells: Sequence[Cell], resolve: Callable[[str], str],
                   known_good: Callable[[str], str | None]) -> dict[str, str]:
    """Tier 1: commit -> the known-good image of the engine version released at that commit, for
    every version cell beside `cell` whose release the repository knows (known_good: cell id ->
    image reference, or None)."""
    found: dict[str, str] = {}
    for version in sibling_cells(cell, cells).values():
        sha = release_commit(version, resolve)
        image = known_good(version.id) if sha else None
        if sha and image:
            found[sha] = image
    return found

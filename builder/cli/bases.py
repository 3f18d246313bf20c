"""`builder bases lock [--check]` and `builder bases mirror [--to REGISTRY/REPO]`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from builder import grammar
from builder.bases.lock import load_lock
from builder.util import confined
from builder.cli.options import ArchOpt, CellOpt, CudaOpt, EngineOpt, MatrixOpt, RegistryOpt
from builder.cli.session import Session
from builder.errors import InputError, StepFailed
from builder.util import utc_now

bases_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                        help="Base images pinned by digest: lock them, check the lock, mirror them.")


def _shown(path: Path) -> Path:
    """The lock's path as the user would type it (relative when below the working directory)."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def _bases(session: Session) -> tuple[list[str], set[str]]:
    """(bases of the selected cells, bases of every cell of the matrix)."""
    every = {c.base_image for c in session.expansion.cells}
    return sorted({c.base_image for c in session.cells()}), every


@bases_app.command("lock")
def lock_cmd(
    matrix: Path = MatrixOpt, arch: Optional[list[str]] = ArchOpt, cuda: Optional[list[str]] = CudaOpt,
    engine: Optional[list[str]] = EngineOpt, cell: Optional[list[str]] = CellOpt,
    registry: Optional[str] = RegistryOpt,
    check: bool = typer.Option(False, "--check", help="Write nothing; exit 1 (one line per base) when the lock no longer matches upstream."),
):
    """Resolve every base image of the (selected) cells to its digest and write the lock file
    (bases.lock beside matrix.yaml; `bases: {lock: FILE}` in the matrix moves it). Builds use the
    locked digests.

    Example: builder bases lock --check
    """
    from builder.bases.locking import check_lock, lock_bases  # the Docker SDK: 0.3 s, only when needed
    from builder.bases.resolve import BaseResolver
    from builder.oci import dockerd
    session = Session(matrix, arch, cuda, engine, cell, registry)
    settings = session.matrix.bases
    references, every = _bases(session)
    if not check:  # the lock is written: refuse a linked one before it is read or anything resolved
        confined(settings.lock, Path(matrix).parent)
    lock = load_lock(settings.lock)
    resolver = BaseResolver(settings, session.names.registry, dockerd.connect, use_lock=False)
    if check:
        problems = check_lock(resolver, references, every, lock, _shown(settings.lock), settings.mirror)
        for line in problems:
            typer.echo(line, err=True)
        if problems:
            raise typer.Exit(1)
        typer.echo(f"{_shown(settings.lock)}: the lock holds for {len(references)} base(s)")
        return
    for change in lock_bases(resolver, references, every, lock, settings.lock, utc_now()[:10],
                             root=Path(matrix).parent):
        typer.echo(change.describe())
    typer.echo(f"wrote {_shown(settings.lock)}")


@bases_app.command("mirror")
def mirror_cmd(
    to: Optional[str] = typer.Option(None, "--to", help="REGISTRY/REPO to copy the locked bases into (default: bases.mirror in the matrix)."),
    matrix: Path = MatrixOpt, arch: Optional[list[str]] = ArchOpt, cuda: Optional[list[str]] = CudaOpt,
    engine: Optional[list[str]] = EngineOpt, cell: Optional[list[str]] = CellOpt,
    registry: Optional[str] = RegistryOpt,
):
    """Copy each locked base image into your registry by digest (manifests and blobs, every
    platform of an index), so builds keep working after upstream deletes the tag. With
    `bases: {mirror: ..., from_mirror: true}` in the matrix, builds pull the bases from there.

    Example: builder bases mirror --to 127.0.0.1:5000/llm-factory/bases
    """
    from builder.bases.locking import mirror_bases
    from builder.bases.resolve import BaseResolver
    from builder.oci import dockerd
    session = Session(matrix, arch, cuda, engine, cell, registry)
    settings = session.matrix.bases
    target = (to or settings.mirror or "").rstrip("/")
    if "/" not in target:
        raise InputError("--to: give REGISTRY/REPO (e.g. 127.0.0.1:5000/llm-factory/bases), or set bases.mirror "
                         "in the matrix")
    problem = grammar.mirror(target) if to is not None else None
    if problem:
        raise InputError(f"--to: {problem}")
    references, _ = _bases(session)
    lock = load_lock(settings.lock)
    if not lock:
        raise StepFailed(f"{_shown(settings.lock)}: no lock file; run `builder bases lock` first")
    resolver = BaseResolver(settings, session.names.registry, dockerd.connect)
    for line in mirror_bases(resolver, references, lock, target, _shown(settings.lock), lambda m: typer.echo(m, err=True)):
        typer.echo(line)

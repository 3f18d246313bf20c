"""`builder board`: the matrix board, a static site made from the registry's records."""

from __future__ import annotations

from pathlib import Path

import typer

from builder.board.assemble import build_board
from builder.board.collect import StoreSource, collect_evidence, collect_watch
from builder.board.inputs import PatchPlanView, board_inputs
from builder.board.render import write_site
from builder.cli.app import app
from builder.cli.options import ArchOpt, CellOpt, CudaOpt, EngineOpt, MatrixOpt, RegistryOpt
from builder.cli.session import Session
from builder.errors import InputError
from builder.matrix.selection import select_cells, select_excluded
from builder.oci.registry import RegistryClient
from builder.util import utc_now

_OWN = {"index.html", "board.json", "cells", "recipes"}  # what a board directory holds


def check_out(out: Path) -> Path:
    """--out: a directory that is new, empty or an earlier board (never someone's other files)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out: '{out}' exists and is not a directory")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in _OWN and not p.name.endswith(".tmp"))
        if foreign and not (out / "board.json").is_file():
            raise InputError(f"--out: '{out}' holds other files ({', '.join(foreign[:3])}); "
                             "give a new or empty directory, or an earlier board's")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test.tmp"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise InputError(f"--out: cannot write to '{out}': {exc.strerror or exc}") from None
    return out


@app.command("board")
def board_cmd(
    out: Path = typer.Option(..., "--out", help="Directory for the site: index.html, cells/, recipes/, board.json."),
    matrix: Path = MatrixOpt, arch: list[str] | None = ArchOpt, cuda: list[str] | None = CudaOpt,
    engine: list[str] | None = EngineOpt, cell: list[str] | None = CellOpt,
    registry: str | None = RegistryOpt,
    title: str = typer.Option("Matrix board", "--title", help="The page title."),
):
    """Write the matrix board: every cell of the matrix (built or not, excluded with the reason)
    with its state, known-good image, checks, sweep and decode-rate history, and the watch's history
    of upstream releases, read from the registry's known-good records, smoke reports and watch
    decisions. A static site: no server, no external assets.

    Example: builder board --out board && xdg-open board/index.html
    """
    session = Session(matrix, arch, cuda, engine, cell, registry)
    cells = select_cells(session.expansion, session.selector)
    excluded = select_excluded(session.expansion, session.selector)
    if not cells and not excluded:
        raise InputError(f"no cell matches {session.selector.describe()}; run `builder matrix --explain`")
    target = check_out(out)
    plans = {}
    for item in cells:
        plan = session.job(item).static_plan
        plans[item.id] = PatchPlanView(applied=tuple((r.id, r.sha256) for r in plan.apply),
                                       skipped=tuple((s.id, s.verdict, s.reason) for s in plan.skipped))
    inputs, excluded_inputs = board_inputs(session.matrix, cells, excluded, plans)
    client = RegistryClient.from_environment(session.names.registry)
    client.ping()  # unreachable: ServiceError, exit 3
    source = StoreSource(client, session.names.repository)
    evidence = collect_evidence(source, [c.id for c in inputs])
    board = build_board(cells=inputs, excluded=excluded_inputs, evidence=evidence, image_repo=session.names.repo,
                        generated_at=utc_now(), title=title, arch_order=tuple(session.matrix.archs),
                        watch=collect_watch(source))
    for line in board.unreadable:  # the board is written anyway: these cells show what could be read
        typer.echo(f"board: {line}", err=True)
    written = write_site(board, target)
    counts = ", ".join(f"{n} {state}" for state, n in board.counts().items() if n)
    typer.echo(f"board: {len(board.cells)} cell(s) ({counts}); {len(written)} files in {target}")
    typer.echo(f"open {target / 'index.html'}")

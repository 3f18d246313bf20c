"""`builder matrix` and `builder render`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from builder.cli.app import app
from builder.cli.options import (
    ArchOpt,
    CellOpt,
    CudaOpt,
    EngineOpt,
    MatrixOpt,
    RegistryOpt,
    path_option,
    wheel_dir,
    writable_dir,
)
from builder.cli.session import Session
from builder.errors import InputError
from builder.matrix.cells import Cell
from builder.matrix.selection import Selector, select_excluded
from builder.render.context import RenderOptions, write_context
from builder.table import print_table


def _cell_row(session: Session, cell: Cell) -> dict:
    return {"id": cell.id, "arch": cell.arch.name, "platform": cell.platform, "cuda": cell.cuda_version,
            "engine": cell.engine.name, "version": cell.engine_version.label, "mode": cell.mode,
            "base_image": cell.base_image, "tag": session.names.friendly(cell.id)}


@app.command("matrix")
def matrix_cmd(
    matrix: Path = MatrixOpt, arch: Optional[list[str]] = ArchOpt, cuda: Optional[list[str]] = CudaOpt,
    engine: Optional[list[str]] = EngineOpt, cell: Optional[list[str]] = CellOpt,
    registry: Optional[str] = RegistryOpt,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    explain: bool = typer.Option(False, "--explain", help="Also list excluded cells and why (with the matrix line)."),
):
    """List the cells of the build matrix.

    Example: builder matrix --arch sm_121a --explain
    """
    session = Session(matrix, arch, cuda, engine, cell, registry)
    from builder.matrix.selection import select_cells
    rows = [_cell_row(session, c) for c in select_cells(session.expansion, session.selector)]
    excluded = select_excluded(session.expansion, session.selector) if explain else []
    if not rows and not excluded and session.selector != Selector():
        session.cells()  # selectors that match nothing are an error, as for every other command
    if as_json:
        out = {"cells": rows}
        if explain:
            out["excluded"] = [{"id": e.cell_id, "reason": e.reason, "line": e.rule_line} for e in excluded]
        typer.echo(json.dumps(out, indent=2))
        return
    print_table(["cell", "arch", "platform", "cuda", "engine", "version", "mode", "friendly tag"],
                [[r["id"], r["arch"], r["platform"], r["cuda"] or "-", r["engine"], r["version"], r["mode"], r["tag"]]
                 for r in rows])
    typer.echo(f"{len(rows)} cell(s)" + (f", {len(excluded)} excluded" if explain else ""))
    if excluded:
        typer.echo("")
        print_table(["excluded cell", "why", "rule"],
                    [[e.cell_id, e.reason, f"{session.matrix.path}:{e.rule_line}"] for e in excluded])


@app.command("render")
def render_cmd(
    out: Path = path_option(..., "--out", help="Directory; each cell's context goes to OUT/<cell id>/."),
    matrix: Path = MatrixOpt, arch: Optional[list[str]] = ArchOpt, cuda: Optional[list[str]] = CudaOpt,
    engine: Optional[list[str]] = EngineOpt, cell: Optional[list[str]] = CellOpt,
    find_links: Optional[Path] = path_option(None, "--find-links", help="Local wheel directory for pip (air-gapped runners)."),
    fetch: bool = typer.Option(False, "--fetch", help="Fetch source cells' engine source (verified, cached) and check patches against it."),
):
    """Write a self-contained build context (Dockerfile, patches, overlays, provenance) per cell.

    Example: builder render --cell vllm-0.20.2-cu130-sm_121a --fetch --out build/contexts
    """
    session = Session(matrix, arch, cuda, engine, cell)
    options = RenderOptions(find_links=wheel_dir(find_links, "--find-links"))
    writable_dir(out, "--out")
    # Every cell is rendered (and, with --fetch, checked) before the first is written: a bad
    # later cell leaves no half-written output behind.
    contexts = [session.render(job, options, fetch=fetch) for job in session.selected_jobs()]
    for context in contexts:
        try:
            target = write_context(context, out)
        except OSError as exc:
            raise InputError(f"--out: cannot write {exc.filename or out}: {exc.strerror or exc}") from None
        note = "" if context.self_contained else "  (source not fetched: add --fetch)"
        typer.echo(f"{context.cell.id}: {target}  hash {context.tag_hash}{note}")

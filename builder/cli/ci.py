"""`builder ci generate` (the command; the workflows are made in builder/workflows/)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from builder.cli.options import ArchOpt, CellOpt, CudaOpt, EngineOpt, MatrixOpt, path_option, writable_dir
from builder.cli.session import Session
from builder.errors import InputError

ci_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="CI workflows for self-hosted runners.")


@ci_app.command("generate")
def ci_generate_cmd(
    provider: str = typer.Option(..., "--provider", help="github or gitea."),
    out: Path = path_option(".", "--out", help="Repository root to write .github/ or .gitea/ into."),
    offline_actions: bool = typer.Option(False, "--offline-actions", help="Plain git/copy steps instead of marketplace actions (act, air-gapped runners)."),
    check: bool = typer.Option(False, "--check", help="Write nothing; exit 1 when the files in --out are stale."),
    matrix: Path = MatrixOpt, arch: Optional[list[str]] = ArchOpt, cuda: Optional[list[str]] = CudaOpt,
    engine: Optional[list[str]] = EngineOpt, cell: Optional[list[str]] = CellOpt,
):
    """Write CI workflows whose jobs build, smoke-test and promote the selected cells, one job per
    arch on runners labelled as matrix.yaml says.

    Example: builder ci generate --provider gitea --arch sm_121a --out .
    """
    from builder.workflows.generate import (
        canonical_command,
        generate_workflows,
        stale_files,
        write_workflows,
    )
    if provider not in ("github", "gitea"):
        raise InputError(f"--provider: '{provider}' is not github or gitea")
    session = Session(matrix, arch, cuda, engine, cell)
    if not check:
        writable_dir(out, "--out")
    command = canonical_command(provider, offline_actions, matrix=str(matrix), arch=arch or (), cuda=cuda or (),
                                engine=engine or (), cell=cell or ())
    files = generate_workflows(session.matrix, session.cells(), provider, offline_actions, command)
    if check:
        stale = stale_files(out, files)
        for path in stale:
            typer.echo(f"stale: {out / path} (regenerate: {command} --out {out})", err=True)
        if stale:
            raise typer.Exit(1)
        typer.echo(f"{len(files)} generated file(s) up to date")
        return
    try:
        written = write_workflows(out, files)
    except OSError as exc:
        raise InputError(f"--out: cannot write {exc.filename or out}: {exc.strerror or exc}") from None
    for path in written:
        typer.echo(str(out / path))

"""The `builder` command line. Each command loads the matrix, selects cells and hands off to a
module that does one thing; errors become one line on stderr with the error's exit code."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Optional

import typer

from . import __version__, cli_registry
from .cells import Cell
from .cli_ci import ci_app
from .cli_patches import patches_app
from .errors import BuilderError, InputError
from .plan import BuildPlan, build_labels, cell_plan
from .render import RenderOptions, write_context
from .selection import select_excluded
from .session import (ArchOpt, CellOpt, CudaOpt, EngineOpt, MatrixOpt, RegistryOpt, Session, existing_dir,
                      existing_file)
from .table import print_table

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  pretty_exceptions_enable=False,
                  help="Build, patch, test and promote LLM inference-engine images from matrix.yaml.\n\n"
                       "Example: builder build --arch sm_121a --dry-run")

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
    from .selection import select_cells
    rows = [_cell_row(session, c) for c in select_cells(session.expansion, session.selector)]
    excluded = select_excluded(session.expansion, session.selector) if explain else []
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
    out: Path = typer.Option(..., "--out", help="Directory; each cell's context goes to OUT/<cell id>/."),
    matrix: Path = MatrixOpt, arch: Optional[list[str]] = ArchOpt, cuda: Optional[list[str]] = CudaOpt,
    engine: Optional[list[str]] = EngineOpt, cell: Optional[list[str]] = CellOpt,
    find_links: Optional[Path] = typer.Option(None, "--find-links", help="Local wheel directory for pip (air-gapped runners)."),
    fetch: bool = typer.Option(False, "--fetch", help="Fetch source cells' engine source (verified, cached) and check patches against it."),
):
    """Write a self-contained build context (Dockerfile, patches, overlays, provenance) per cell.

    Example: builder render --cell vllm-0.20.2-cu130-sm_121a --fetch --out build/contexts
    """
    session = Session(matrix, arch, cuda, engine, cell)
    options = RenderOptions(find_links=existing_dir(find_links, "--find-links"))
    for item in session.cells():
        context = session.render(item, options, fetch=fetch)
        try:
            target = write_context(context, out)
        except OSError as exc:
            raise InputError(f"--out: cannot write {exc.filename or out}: {exc.strerror or exc}") from None
        note = "" if context.self_contained else "  (source not fetched: add --fetch)"
        typer.echo(f"{item.id}: {target}  hash {context.tag_hash}{note}")


@app.command("build")
def build_cmd(
    matrix: Path = MatrixOpt, arch: Optional[list[str]] = ArchOpt, cuda: Optional[list[str]] = CudaOpt,
    engine: Optional[list[str]] = EngineOpt, cell: Optional[list[str]] = CellOpt,
    registry: Optional[str] = RegistryOpt,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan: every docker command, in order; build nothing."),
    ca_bundle: Optional[Path] = typer.Option(None, "--ca-bundle", help="CA bundle for pip inside the build, handed in as a BuildKit secret (corporate proxies)."),
    find_links: Optional[Path] = typer.Option(None, "--find-links", help="Local wheel directory for pip --find-links (air-gapped runners)."),
    secret: Optional[list[str]] = typer.Option(None, "--secret", help="Extra BuildKit secret ID=FILE (e.g. hf_token=~/.hf_token)."),
    jobs: int = typer.Option(1, "--jobs", min=1, help="Cells built at once."),
    max_jobs: Optional[int] = typer.Option(None, "--max-jobs", min=1, help="Parallel compile jobs inside a source build (default: capped by memory, cores and the arch's limit)."),
    keep_going: bool = typer.Option(False, "--keep-going", help="Go on with the other cells when one fails."),
    workdir: Path = typer.Option(Path("build"), "--workdir", help="Where contexts and logs go (logs/<cell>.log)."),
    smoke: bool = typer.Option(False, "--smoke", help="Smoke-test each built (or up-to-date) image."),
    promote: bool = typer.Option(False, "--promote", help="With --smoke: promote each image that passed."),
):
    """Build the selected cells through BuildKit and push their immutable tags; a cell whose
    immutable tag the registry already has is skipped as up to date.

    Example: builder build --arch cpu --ca-bundle /etc/ssl/certs/ca-certificates.crt --find-links /opt/wheels
    """
    session = Session(matrix, arch, cuda, engine, cell, registry)
    defaults = session.matrix.pip
    ca_bundle = existing_file(ca_bundle or defaults.ca_bundle, "--ca-bundle")
    secrets = {"cabundle": ca_bundle.resolve()} if ca_bundle else {}
    for item in secret or []:
        key, _, value = item.partition("=")
        if not key or not value:
            raise InputError(f"--secret: '{item}' must be ID=FILE")
        secrets[key] = existing_file(Path(value).expanduser(), f"--secret {key}").resolve()
    options = RenderOptions(find_links=existing_dir(find_links or defaults.find_links, "--find-links"))
    from .buildtool import detect_build_tool
    tool = detect_build_tool()
    workdir = workdir.resolve()
    cells = session.cells()
    if dry_run:
        plans = []
        for item in cells:
            context = session.render(item, options)
            labels = build_labels(context, "<build time>", "<factory git revision>", "<base image digest>")
            plans.append(cell_plan(tool, session.names, context, workdir / "contexts" / item.id, secrets, labels,
                                   workdir / "logs" / f"{item.id}.iid", {"MAX_JOBS": str(max_jobs)} if max_jobs else None))
        _print_plan(BuildPlan(tool, tuple(plans)))
        return
    from .build import Builder, BuildOptions, summary_rows
    from .progress import Progress
    from .registry import RegistryClient
    client = RegistryClient.from_environment(session.names.registry)
    client.ping()
    typer.echo(f"build tool: {tool.describe()}; registry {session.names.repo}; {len(cells)} cell(s)", err=True)
    builder = Builder(tool, session.names, client, lambda c: session.render(c, options, fetch=True),
                      BuildOptions(workdir, secrets, jobs, keep_going, _git_revision(session.root), max_jobs),
                      Progress(len(cells)))
    try:
        results = builder.build_all(cells)
    except KeyboardInterrupt:
        typer.echo("interrupted: running builds stopped, nothing further pushed", err=True)
        raise typer.Exit(130)
    smoked = _smoke_built(session, client, cells, results, workdir, promote) if smoke else {}
    typer.echo("")
    rows = summary_rows(results)
    if smoke:
        rows = [row + [smoked.get(row[0], "-")] for row in rows]
    print_table(["cell", "result", "image", "digest", "time", "log"] + (["smoke"] if smoke else []), rows)
    if not all(r.ok for r in results) or any(v.startswith("FAILED") for v in smoked.values()):
        raise typer.Exit(1)


def _smoke_built(session, client, cells, results, workdir: Path, promote: bool) -> dict[str, str]:
    """Smoke-test (and promote) every image the build produced; one cell after another, since
    a smoke test needs the machine's memory (and GPU) to itself."""
    from .smoke_cli import SmokeOptions, smoke_and_maybe_promote
    by_id = {c.id: c for c in cells}
    verdicts = {}
    for result in results:
        if not result.ok:
            continue
        report = smoke_and_maybe_promote(
            session, client, by_id[result.cell_id], result.image, result.digest,
            SmokeOptions(promote=promote, report_dir=workdir / "reports"),
            progress=lambda m, cell=result.cell_id: typer.echo(f"{cell}: {m}", err=True))
        typer.echo(report.text(), err=True)
        verdicts[result.cell_id] = ("passed" + (", promoted" if promote else "")) if report.passed else \
            f"FAILED (report {workdir / 'reports' / (result.cell_id + '.txt')})"
    return verdicts


def _git_revision(root: Path) -> str:
    import subprocess
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
    except OSError:
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


base_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Base images for machines without a public registry.")
app.add_typer(base_app, name="base")


@base_app.command("create")
def base_create_cmd(
    tag: str = typer.Option("llm-factory/bookworm-python:3.11", "--tag", help="Image name the matrix uses."),
    suite: str = typer.Option("bookworm", "--suite", help="Debian suite."),
    mirror: str = typer.Option("http://deb.debian.org/debian", "--mirror", help="Debian mirror."),
):
    """Make a Debian base image with Python offline from a registry: debootstrap + docker import.

    Example: builder base create --tag llm-factory/bookworm-python:3.11
    """
    from .baseimage import create_base
    from .buildtool import detect_build_tool
    seconds = create_base(tag, suite, mirror, docker=detect_build_tool().docker, log=lambda m: typer.echo(m, err=True))
    typer.echo(f"{tag}: created in {seconds:.0f}s")


def _print_plan(plan: BuildPlan) -> None:
    typer.echo(f"build tool: {plan.tool.describe()}")
    for index, item in enumerate(plan.cells, 1):
        ctx = item.context
        typer.echo(f"\n[{index}/{len(plan.cells)}] {ctx.cell.id}  ({ctx.cell.platform}, {ctx.cell.mode} mode)")
        typer.echo(f"  image:   {item.image}")
        typer.echo(f"  promote: {item.friendly} (only after the smoke test passes)")
        applied = ", ".join(p.id for p in ctx.plan.apply) or "none"
        typer.echo(f"  patches: {applied}" + ("" if ctx.plan.checked else " (checked against the source at build time)"))
        for skip in ctx.plan.skipped:
            typer.echo(f"    skip {skip.id}: {skip.reason}")
        for number, step in enumerate(item.steps, 1):
            typer.echo(f"  {number}. {step.shell()}")


app.add_typer(patches_app, name="patches")
app.add_typer(ci_app, name="ci")
cli_registry.register(app)


def main() -> None:
    # Usage errors (unknown option, missing value) are click's: usage line, one error line, exit 2.
    # Everything the commands raise is a BuilderError: one line, its own exit code, no traceback.
    # SIGTERM (a CI runner cancelling the job) unwinds like Ctrl-C, so cleanups (running builds,
    # smoke-test containers) happen either way.
    signal.signal(signal.SIGTERM, _interrupt)
    # (click turns Ctrl-C into "Aborted!" and exit 1 after the cleanups have run.)
    try:
        app()
    except BuilderError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


@app.callback(invoke_without_command=True)
def _version(version: bool = typer.Option(False, "--version", help="Print the version and exit.")):
    if version:
        typer.echo(__version__)
        raise typer.Exit()

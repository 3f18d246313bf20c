"""`builder build` (the plan, or the build) and `builder base create`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import typer

from builder import grammar
from builder.buildkit.plan import BuildPlan, build_labels, cell_plan
from builder.cli.app import app
from builder.cli.options import (
    ArchOpt,
    CellOpt,
    CudaOpt,
    EngineOpt,
    MatrixOpt,
    RegistryOpt,
    existing_file,
    path_option,
    wheel_dir,
    writable_dir,
)
from builder.attest.attach import configured_attestor
from builder.cli.session import Session
from builder.cli.smoke import check_floor
from builder.errors import InputError, ServiceError, StepFailed
from builder.render.context import RenderOptions
from builder.table import print_table


@app.command("build")
def build_cmd(
    matrix: Path = MatrixOpt, arch: Optional[list[str]] = ArchOpt, cuda: Optional[list[str]] = CudaOpt,
    engine: Optional[list[str]] = EngineOpt, cell: Optional[list[str]] = CellOpt,
    registry: Optional[str] = RegistryOpt,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan: every docker command, in order; build nothing."),
    ca_bundle: Optional[Path] = path_option(None, "--ca-bundle", help="CA bundle for pip inside the build, handed in as a BuildKit secret (corporate proxies)."),
    find_links: Optional[Path] = path_option(None, "--find-links", help="Local wheel directory for pip --find-links (air-gapped runners)."),
    secret: Optional[list[str]] = typer.Option(None, "--secret", help="Extra BuildKit secret ID=FILE (e.g. hf_token=~/.hf_token)."),
    jobs: int = typer.Option(1, "--jobs", min=1, help="Cells built at once."),
    max_jobs: Optional[int] = typer.Option(None, "--max-jobs", min=1, help="Parallel compile jobs inside a source build (default: capped by memory, cores and the arch's limit)."),
    keep_going: bool = typer.Option(False, "--keep-going", help="Go on with the other cells when one fails."),
    workdir: Path = path_option("build", "--workdir", help="Where contexts and logs go (logs/<cell>.log)."),
    smoke: bool = typer.Option(False, "--smoke", help="Smoke-test each built (or up-to-date) image."),
    promote: bool = typer.Option(False, "--promote", help="With --smoke: promote each image that passed."),
    accept_inconclusive: bool = typer.Option(False, "--accept-inconclusive", help="With --smoke: let an A/B gate that stayed inconclusive at its resampling cap pass (the report says so)."),
    floor: Optional[Path] = path_option(None, "--floor", help="With --smoke: this runner's gate floor (builder smoke --calibrate-floor wrote it); a cell whose gate threshold lies below it is refused before anything is built, and each gate names it."),
):
    """Build the selected cells through BuildKit and push their immutable tags; a cell whose
    immutable tag the registry already has is skipped as up to date.

    Example: builder build --arch cpu --ca-bundle /etc/ssl/certs/ca-certificates.crt --find-links /opt/wheels
    """
    session = Session(matrix, arch, cuda, engine, cell, registry)
    attestor = configured_attestor() if smoke and promote else None  # a bad key is exit 2 before any build
    defaults = session.matrix.pip
    if ca_bundle is not None:
        existing_file(ca_bundle, "--ca-bundle")
    else:
        ca_bundle = existing_file(defaults.ca_bundle, defaults.ca_bundle_where)
    secrets = {"cabundle": ca_bundle.resolve()} if ca_bundle else {}
    for item in secret or []:
        key, path = _secret(item)
        secrets[key] = path
    if find_links is not None:
        find_links = wheel_dir(find_links, "--find-links")
    else:
        find_links = wheel_dir(defaults.find_links, defaults.find_links_where)
    options = RenderOptions(find_links=find_links)
    writable_dir(workdir, "--workdir")
    workdir = workdir.resolve()
    selected = session.cells()
    # What the selection needs (a model helper for --smoke, a base that is another cell's image), in
    # dependency order; validated and rendered with the rest before the registry says which it has.
    cell_jobs = session.ordered_jobs(selected, smoke=smoke)
    for job in cell_jobs:  # patch records, templates and values of every cell, before Docker or a registry
        session.render(job, options)
    if floor is not None and not smoke:
        raise InputError("--floor: the gate's floor applies to the smoke tests: add --smoke")
    runner_floor = None
    for job in cell_jobs if smoke else []:  # a threshold this runner cannot resolve: refused before any build
        runner_floor = check_floor(floor, job.smoke, f"--floor ({job.id})")
    from builder.buildkit.tool import detect_build_tool
    tool = detect_build_tool()  # asks the docker CLI (and so the Engine): after every input is checked
    if dry_run:
        for job in cell_jobs:
            if job.needed_by:
                typer.echo(f"added {job.id}: the {job.needed_by} (a build skips it when the registry "
                           "has its tested image)", err=True)
        plans = []
        revision = _git_revision(session.root)
        for job in cell_jobs:
            try:  # read-only lookups (lock, Engine, registry HEAD); the plan still prints without them
                context = session.render(job, options, resolve=True)
            except (ServiceError, StepFailed) as exc:
                typer.echo(f"{job.id}: base not resolved ({exc}); its hash below is provisional", err=True)
                context = session.render(job, options)
            labels = build_labels(context, "<build time>", revision,
                                  context.base.digest if context.base else "<base image digest>")
            plans.append(cell_plan(tool, session.names, context, workdir, secrets, labels, max_jobs))
        _print_plan(BuildPlan(tool, tuple(plans)))
        return
    from builder.buildkit.progress import Progress
    from builder.buildkit.runner import Builder, BuildOptions, summary_rows
    from builder.oci.registry import RegistryClient
    client = RegistryClient.from_environment(session.names.registry)
    client.ping()
    needed = session.dependency_ids(selected, smoke=smoke)
    present = frozenset(c for c in needed if client.head_manifest(session.names.repository, c) is not None)
    cell_jobs = session.ordered_jobs(selected, smoke=smoke, present=present)  # a tested image exists: not rebuilt
    for job in cell_jobs:
        if job.needed_by:
            typer.echo(f"added {job.id}: the {job.needed_by} (the registry has no tested image of it)", err=True)
    by_id = {job.id: job for job in cell_jobs}
    cells = [job.cell for job in cell_jobs]
    typer.echo(f"build tool: {tool.describe()}; registry {session.names.repo}; {len(cells)} cell(s)", err=True)
    builder: Builder = Builder(tool, session.names, client,
                      lambda c: session.render(by_id[c.id], options, fetch=True, resolve=True,
                                               built=builder.built_digests()),
                      BuildOptions(workdir, secrets, jobs, keep_going, _git_revision(session.root), max_jobs),
                      Progress(len(cells)))
    try:
        results = builder.build_all(cells, {job.id: base for job in cell_jobs
                                            if (base := session.base_dependency(job)) in by_id})
    except KeyboardInterrupt:
        typer.echo("interrupted: running builds stopped, nothing further pushed", err=True)
        raise typer.Exit(130)
    from builder.pipeline import smoke_built  # the Docker SDK only where it is used
    smoked = smoke_built(session.names, client, cell_jobs, results, workdir, promote,
                         say=lambda m: typer.echo(m, err=True), accept_inconclusive=accept_inconclusive,
                         attestor=attestor, floor=runner_floor) if smoke else {}
    typer.echo("")
    rows = summary_rows(results)
    if smoke:
        rows = [row + [smoked.get(row[0], "-")] for row in rows]
    print_table(["cell", "result", "image", "digest", "time", "log"] + (["smoke"] if smoke else []), rows)
    if not all(r.ok for r in results) or any(v.startswith("FAILED") for v in smoked.values()):
        raise typer.Exit(1)


def _secret(item: str) -> tuple[str, Path]:
    """--secret ID=FILE, checked: buildx reads `id=ID,src=FILE` as CSV, so neither may hold a
    comma or a quote (they would add fields to the secret's spec)."""
    key, sep, value = item.partition("=")
    if not sep or not key or not value:
        raise InputError(f"--secret: '{item}' must be ID=FILE")
    if not grammar.SECRET_ID.fullmatch(key):
        raise InputError(f"--secret: the id {key!r} may hold only letters, digits, '.', '_', '-'")
    path = existing_file(Path(value).expanduser(), f"--secret {key}").resolve()
    if any(c in str(path) for c in ',"\'') or grammar.one_line(str(path)):
        raise InputError(f"--secret {key}: the path {str(path)!r} holds a comma, a quote or a control "
                         "character, which BuildKit would read as more of the secret's spec; rename the file")
    return key, path


_SUITE = re.compile(r"[a-z0-9][a-z0-9.-]*")


def _git_revision(root: Path) -> str:
    import subprocess
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
    except OSError:
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


base_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Base images for machines without a public registry.")


@base_app.command("create")
def base_create_cmd(
    tag: str = typer.Option("llm-factory/bookworm-python:3.11", "--tag", help="Image name the matrix uses."),
    suite: str = typer.Option("bookworm", "--suite", help="Debian suite."),
    mirror: str = typer.Option("http://deb.debian.org/debian", "--mirror", help="Debian mirror."),
):
    """Make a Debian base image with Python offline from a registry: debootstrap + docker import.

    Example: builder base create --tag llm-factory/bookworm-python:3.11
    """
    for option, problem in (("--tag", grammar.image_reference(tag)),
                            ("--suite", None if _SUITE.fullmatch(suite) else f"{suite[:40]!r} is not a Debian suite name"),
                            ("--mirror", None if re.fullmatch(r"https?://[^\s\x00-\x1f]+", mirror)
                             else f"{mirror[:60]!r} is not an http(s) URL")):
        if problem:
            raise InputError(f"{option}: {problem}")
    from builder.buildkit.baseimage import create_base
    from builder.buildkit.tool import detect_build_tool
    seconds = create_base(tag, suite, mirror, docker=detect_build_tool().docker, log=lambda m: typer.echo(m, err=True))
    typer.echo(f"{tag}: created in {seconds:.0f}s")


def _print_plan(plan: BuildPlan) -> None:
    typer.echo(f"build tool: {plan.tool.describe()}")
    for index, item in enumerate(plan.cells, 1):
        ctx = item.context
        typer.echo(f"\n[{index}/{len(plan.cells)}] {ctx.cell.id}  ({ctx.cell.platform}, {ctx.cell.mode} mode)")
        typer.echo(f"  image:   {item.image}")
        typer.echo(f"  promote: {item.friendly} (only after the smoke test passes)")
        base = ctx.base
        typer.echo(f"  base:    {base.from_text}" + (f" (local image {base.digest[:19]}, checked before and after "
                                                     "the build)" if base.local else f" (digest from the {base.origin})")
                   if base else f"  base:    {ctx.cell.base_image} (not resolved)")
        applied = ", ".join(p.id for p in ctx.plan.apply) or "none"
        typer.echo(f"  patches: {applied}" + ("" if ctx.plan.checked else " (checked against the source at build time)"))
        for skip in ctx.plan.skipped:
            typer.echo(f"    skip {skip.id}: {skip.reason}")
        for number, step in enumerate(item.steps, 1):
            typer.echo(f"  {number}. {step.shell()}")

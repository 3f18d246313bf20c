"""The `builder` command line. Each command loads the matrix, selects cells and hands off to a
module that does one thing; errors become one line on stderr with the error's exit code."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Optional

import typer
from packaging.version import InvalidVersion, Version

from . import __version__
from .cells import Cell, expand
from .errors import BuilderError, InputError
from .matrix import Matrix, load_matrix
from .patches import PatchRecord, load_patches, plan_static
from .plan import BuildPlan, ImageNames, build_labels, cell_plan
from .render import BuildContext, RenderOptions, TEMPLATE_ROOT, render_cell, write_context
from .selection import Selector, make_selector, require_cells, select_excluded
from .table import print_table

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  pretty_exceptions_enable=False,
                  help="Build, patch, test and promote LLM inference-engine images from matrix.yaml.\n\n"
                       "Example: builder build --arch sm_121a --dry-run")

# Options shared by every command that selects cells.
MatrixOpt = typer.Option(Path(os.environ.get("BUILDER_MATRIX", "matrix.yaml")), "--matrix",
                         help="The matrix file (env BUILDER_MATRIX).")
ArchOpt = typer.Option(None, "--arch", help="Only these archs (repeat or comma-separate), e.g. sm_121a.")
CudaOpt = typer.Option(None, "--cuda", help="Only these CUDA releases, e.g. 13.0.")
EngineOpt = typer.Option(None, "--engine", help="Engine with an optional version specifier, e.g. 'vllm==0.20.2'.")
CellOpt = typer.Option(None, "--cell", help="Cell ids or globs, e.g. 'vllm-0.20.2-*'.")
RegistryOpt = typer.Option(None, "--registry", help="Registry host[:port] (env BUILDER_REGISTRY; default from matrix.yaml).")


class Session:
    """What every command needs: the matrix, its expansion and the selected cells."""

    def __init__(self, matrix_path: Path, arch, cuda, engine, cell, registry: str | None = None):
        self.matrix: Matrix = load_matrix(matrix_path)
        self.expansion = expand(self.matrix)
        self.selector: Selector = make_selector(self.matrix, arch, cuda, engine, cell)
        registry = registry or os.environ.get("BUILDER_REGISTRY") or self.matrix.registry
        self.names = ImageNames(registry, self.matrix.repository)

    @property
    def root(self) -> Path:
        return self.matrix.directory

    @property
    def template_root(self) -> Path:
        local = self.root / "dockerfiles"
        return local if local.is_dir() else TEMPLATE_ROOT

    def cells(self) -> list[Cell]:
        return require_cells(self.expansion, self.selector)

    def patches(self, engine: str | None = None) -> list[PatchRecord]:
        return load_patches(self.root / "patches", engine)

    def render(self, cell: Cell, options: RenderOptions = RenderOptions(), fetch: bool = False) -> BuildContext:
        """Render a cell; with fetch, a source cell gets its verified source and a patch plan
        checked against it (a CONFLICT stops the cell here, before anything is built)."""
        records = self.patches(cell.engine.name)
        if not (fetch and cell.mode == "source"):
            return render_cell(cell, plan_static(records, cell), options, self.template_root)
        from .contexts import checked_context
        return checked_context(cell, records, options, self.template_root)


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
    options = RenderOptions(find_links=_existing_dir(find_links, "--find-links"))
    for item in session.cells():
        context = session.render(item, options, fetch=fetch)
        target = write_context(context, out)
        note = "" if context.self_contained else "  (source not fetched: add --fetch)"
        typer.echo(f"{item.id}: {target}  hash {context.tag_hash}{note}")


def _existing_dir(path: Optional[Path], option: str) -> Optional[Path]:
    if path is not None and not path.is_dir():
        raise InputError(f"{option}: '{path}' is not a directory")
    return path


def _existing_file(path: Optional[Path], option: str) -> Optional[Path]:
    if path is not None and not path.is_file():
        raise InputError(f"{option}: '{path}' is not a readable file")
    return path


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
    ca_bundle = _existing_file(ca_bundle or defaults.ca_bundle, "--ca-bundle")
    secrets = {"cabundle": ca_bundle.resolve()} if ca_bundle else {}
    for item in secret or []:
        key, _, value = item.partition("=")
        if not key or not value:
            raise InputError(f"--secret: '{item}' must be ID=FILE")
        secrets[key] = _existing_file(Path(value).expanduser(), f"--secret {key}").resolve()
    options = RenderOptions(find_links=_existing_dir(find_links or defaults.find_links, "--find-links"))
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
                                   workdir / "logs" / f"{item.id}.iid"))
        _print_plan(BuildPlan(tool, tuple(plans)))
        return
    from .build import Builder, BuildOptions, summary_rows
    from .progress import Progress
    from .registry import RegistryClient
    client = RegistryClient.from_environment(session.names.registry)
    client.ping()
    typer.echo(f"build tool: {tool.describe()}; registry {session.names.repo}; {len(cells)} cell(s)", err=True)
    builder = Builder(tool, session.names, client, lambda c: session.render(c, options, fetch=True),
                      BuildOptions(workdir, secrets, jobs, keep_going, _git_revision(session.root)),
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


patches_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Check patch records against real upstream sources.")
app.add_typer(patches_app, name="patches")


@patches_app.command("check")
def patches_check_cmd(
    engine: str = typer.Option("vllm", "--engine", help="The engine whose patches to check."),
    versions: str = typer.Option(..., "--versions", help="Comma-separated engine versions, e.g. 0.19.1,0.20.2."),
    arch: Optional[str] = typer.Option(None, "--arch", help="Judge for this arch only (others: not applicable)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    matrix: Path = MatrixOpt,
    patches_dir: Optional[Path] = typer.Option(None, "--patches", help="Patch records directory (default: patches/ beside the matrix)."),
):
    """Judge every patch against the real source of each version: applies, already upstream,
    not applicable, or CONFLICT (with the file and the failing hunk). Exits 1 on a conflict.

    Example: builder patches check --engine vllm --versions 0.14.0,0.16.0,0.19.1,0.20.2,0.33.0 --arch sm_121a
    """
    from .patchreport import check_versions, format_verdicts, has_conflict, verdicts_json
    from .sources import SourceCache
    loaded = load_matrix(matrix)
    if engine not in loaded.engines:
        raise InputError(f"--engine: unknown engine '{engine}' (the matrix defines: {', '.join(loaded.engines)})")
    if arch is not None and arch not in loaded.archs:
        raise InputError(f"--arch: unknown arch '{arch}' (the matrix defines: {', '.join(loaded.archs)})")
    wanted = [v.strip() for v in versions.split(",") if v.strip()]
    for version in wanted:
        try:
            Version(version)
        except InvalidVersion:
            raise InputError(f"--versions: '{version}' is not a PEP 440 version (e.g. 0.20.2)") from None
    records = load_patches(patches_dir or loaded.directory / "patches", engine)
    if not records:
        raise InputError(f"no {engine} patch records under {patches_dir or loaded.directory / 'patches'}")
    verdicts = check_versions(loaded, records, engine, wanted, arch, SourceCache(),
                              progress=lambda m: typer.echo(m, err=True))
    typer.echo(verdicts_json(verdicts) if as_json else format_verdicts(verdicts))
    if has_conflict(verdicts):
        raise typer.Exit(1)


@app.command("smoke")
def smoke_command(
    image: Optional[str] = typer.Argument(None, help="An image in the registry: REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:..."),
    cell: Optional[str] = typer.Option(None, "--cell", help="Smoke-test the newest image of this cell instead."),
    promote: bool = typer.Option(False, "--promote", help="Promote the image when every check passed."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    baseline_tps: Optional[float] = typer.Option(None, "--baseline-tps", help="Decode tok/s to compare with (default: the cell's known-good record)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", min=0.0, max=1.0, help="Allowed throughput regression (0.05 = 5%; default: the matrix's regression_threshold, 0.05 unless set)."),
    model_dir: Optional[Path] = typer.Option(None, "--model-dir", help="Serve this local model directory instead of the matrix's."),
    report_dir: Path = typer.Option(Path("build/reports"), "--report-dir", help="Where <cell>.json and <cell>.txt go."),
    matrix: Path = MatrixOpt, registry: Optional[str] = RegistryOpt,
):
    """Boot an image with its tiny model and check it: models, completions, determinism under
    concurrency, golden outputs, tool calls, throughput against the last known-good, and (GPU
    cells) the kernel audit. The report is stored beside the image in the registry.

    Example: builder smoke --cell vllm-0.32.0-cpu --promote
    """
    from .smoke_cli import SmokeOptions, smoke_command as run
    run(Session(matrix, None, None, None, None, registry), image, cell,
        SmokeOptions(promote, as_json, baseline_tps, threshold, model_dir, report_dir))


@app.command("promote")
def promote_command(
    target: str = typer.Argument(..., help="A cell id (its newest image with a passing smoke report) or sha256:<digest>."),
    matrix: Path = MatrixOpt, registry: Optional[str] = RegistryOpt,
):
    """Point the cell's friendly tag at a tested digest (manifest copy inside the registry: no
    rebuild, no layer moved) and record it as known-good. Untested digests are refused.

    Example: builder promote vllm-0.32.0-cpu
    """
    from .promotion_cli import promote_cmd
    promote_cmd(Session(matrix, None, None, None, None, registry), target)


from .promotion_cli import known_good_app  # noqa: E402  (sub-commands registered below)

app.add_typer(known_good_app, name="known-good")


@known_good_app.command("list")
def known_good_list(matrix: Path = MatrixOpt, registry: Optional[str] = RegistryOpt,
                    as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """List every cell's known-good image. Example: builder known-good list"""
    from .promotion_cli import list_records
    list_records(Session(matrix, None, None, None, None, registry), as_json)


@known_good_app.command("show")
def known_good_show(cell_id: str = typer.Argument(..., help="The cell id."), matrix: Path = MatrixOpt,
                    registry: Optional[str] = RegistryOpt, as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """Show one cell's record: digest, patches, smoke summary, throughput history.
    Example: builder known-good show vllm-0.32.0-cpu"""
    from .promotion_cli import show_record
    show_record(Session(matrix, None, None, None, None, registry), cell_id, as_json)


@known_good_app.command("export")
def known_good_export(matrix: Path = MatrixOpt, registry: Optional[str] = RegistryOpt,
                      out: Optional[Path] = typer.Option(None, "--out", help="Write the lock file here (default: stdout).")):
    """Write a lock file (cell -> image@sha256) to commit to deployment repos.
    Example: builder known-good export --out images.lock.yaml"""
    from .promotion_cli import export_lock
    export_lock(Session(matrix, None, None, None, None, registry), out)


ci_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="CI workflows for self-hosted runners.")
app.add_typer(ci_app, name="ci")


@ci_app.command("generate")
def ci_generate_cmd(
    provider: str = typer.Option(..., "--provider", help="github or gitea."),
    out: Path = typer.Option(Path("."), "--out", help="Repository root to write .github/ or .gitea/ into."),
    offline_actions: bool = typer.Option(False, "--offline-actions", help="Plain git/copy steps instead of marketplace actions (act, air-gapped runners)."),
    check: bool = typer.Option(False, "--check", help="Write nothing; exit 1 when the files in --out are stale."),
    matrix: Path = MatrixOpt, arch: Optional[list[str]] = ArchOpt, cuda: Optional[list[str]] = CudaOpt,
    engine: Optional[list[str]] = EngineOpt, cell: Optional[list[str]] = CellOpt,
):
    """Write CI workflows whose jobs build, smoke-test and promote the selected cells, one job per
    arch on runners labelled as matrix.yaml says.

    Example: builder ci generate --provider gitea --arch sm_121a --out .
    """
    from .ciworkflows import canonical_command, generate_workflows, stale_files, write_workflows
    if provider not in ("github", "gitea"):
        raise InputError(f"--provider: '{provider}' is not github or gitea")
    session = Session(matrix, arch, cuda, engine, cell)
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
    for path in write_workflows(out, files):
        typer.echo(str(out / path))


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

"""`builder smoke`: smoke-test an image of the registry (or a cell's newest) and store the report."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Optional, cast, get_args

import typer

from builder.cli.options import MatrixOpt, RegistryOpt, existing_dir, path_option, writable_dir
from builder.attest.attach import configured_attestor
from builder.cli.session import Session
from builder.errors import InputError
from builder.matrix.smoke_settings import Consistency, SmokeSettings
from builder.measure.floor import Floor
from builder.oci.registry import RegistryClient


def smoke_command(
    image: Optional[str] = typer.Argument(None, help="An image in the registry: REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:..."),
    cell: Optional[str] = typer.Option(None, "--cell", help="Smoke-test the newest image of this cell instead (with --url: take this cell's smoke settings)."),
    url: Optional[str] = typer.Option(None, "--url", help="Check a server that is already running (no Docker, no registry), e.g. http://127.0.0.1:8000."),
    known_good_url: Optional[str] = typer.Option(None, "--known-good-url", help="With --url: a running known-good server; the A/B gate interleaves samples between the two."),
    served_name: Optional[str] = typer.Option(None, "--served-name", help="With --url: the served model name (default: the one model the server lists)."),
    profile: Optional[str] = typer.Option(None, "--profile", help="With --url and --cell: the server runs this serve profile of the cell (its consistency rule; a speculative profile must show accepted drafts)."),
    server_log: Optional[Path] = path_option(None, "--server-log", help="With --url: the server's log file, for the backends it chose (and the cell's expected_backends)."),
    golden: Optional[Path] = path_option(None, "--golden", help="With --url: a known-good server's report (builder smoke --url ... --json > FILE); this server must reproduce its golden outputs and golden scores."),
    consistency: Optional[str] = typer.Option(None, "--consistency", help="With --url: exact (identical outputs under concurrency) or scored (each output re-scored by the server: for servers that are not batch-invariant, e.g. vLLM on a GPU); default: the cell's, else exact."),
    engine: Optional[str] = typer.Option(None, "--engine", help="With --url and no --cell: the engine behind the URL (its server's answers and streaming fields differ), e.g. vllm or llama.cpp."),
    concurrency: Optional[str] = typer.Option(None, "--concurrency", help="Sweep levels, e.g. 1,2,4,8 (default: the matrix's sweep.concurrency)."),
    samples: Optional[int] = typer.Option(None, "--samples", min=1, max=100, help="Sweep samples per level."),
    tokens: Optional[int] = typer.Option(None, "--tokens", min=2, max=65536, help="Tokens decoded by every sweep request."),
    floor: Optional[Path] = path_option(None, "--floor", help="This runner's gate floor (a file --calibrate-floor wrote): a --threshold below the floor measured at a gate level is refused before anything runs."),
    calibrate_floor: Optional[Path] = path_option(None, "--calibrate-floor", help="With --url and --known-good-url serving one image (two processes): the gate is an A/A; fold its floor into this file."),
    depths: Optional[str] = typer.Option(None, "--depths", help="Prompt depths in tokens, each level swept at each, e.g. 0,4096,16384 (0: the short prompts; default: the matrix's sweep.depths)."),
    promote: bool = typer.Option(False, "--promote", help="Promote the image when every check passed."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    threshold: Optional[float] = typer.Option(None, "--threshold", min=0.0, max=0.99, help="Allowed decode slowdown against the known-good measured beside it (0.05 = 5%; default: the matrix's gate.threshold)."),
    accept_inconclusive: bool = typer.Option(False, "--accept-inconclusive", help="Let an inconclusive gate (still unresolved at its resampling cap) pass; the report says so."),
    model_dir: Optional[Path] = path_option(None, "--model-dir", help="Serve this local model directory instead of the matrix's."),
    report_dir: Path = path_option("build/reports", "--report-dir", help="Where <cell>.json and <cell>.txt go."),
    matrix: Path = MatrixOpt, registry: Optional[str] = RegistryOpt,
):
    """Boot an image with its smoke model and check it: models, completions, determinism under
    concurrency (and under each serve profile), golden outputs, tool calls, the concurrency sweep, the
    A/B gate against the cell's known-good image booted beside it, and (GPU cells) the kernel audit.
    The report is stored beside the image in the registry. With --url: the same checks, the sweep and
    (with --known-good-url) the gate against servers already running, without Docker or a registry.

    Examples: builder smoke --cell vllm-0.32.0-cpu --promote;
    builder smoke --url http://127.0.0.1:8000 --known-good-url http://127.0.0.1:8001
    """
    overrides = SweepOverrides(_levels(concurrency), samples, tokens, threshold, _depths(depths), floor)
    if url is not None:
        if image or promote or model_dir:
            raise InputError("--url checks a running server: IMAGE, --promote and --model-dir do not apply")
        run_url_command(url, known_good_url, served_name, cell, engine, matrix, overrides, accept_inconclusive,
                        as_json, profile, server_log, calibrate_floor=calibrate_floor, golden_path=golden,
                        consistency=_consistency(consistency))
        return
    if known_good_url or served_name or profile or server_log or calibrate_floor or consistency:
        raise InputError("--known-good-url, --served-name, --profile, --server-log, --calibrate-floor and --consistency go with --url")
    from builder.pipeline import SmokeOptions  # the Docker SDK only where it is used (not on a GPU host)
    session = Session(matrix, None, None, None, None, registry)
    attestor = configured_attestor() if promote else None  # a bad key is exit 2 before anything runs
    run_smoke_command(session, image, cell, SmokeOptions(promote, as_json, accept_inconclusive, threshold,
                                                         model_dir, report_dir, attestor), overrides)


@dataclasses.dataclass(frozen=True)
class SweepOverrides:
    concurrency: tuple[int, ...] | None = None
    samples: int | None = None
    tokens: int | None = None
    threshold: float | None = None
    depths: tuple[int, ...] | None = None
    floor: Path | None = None  # the runner's gate floor file (measure/floor.py)

    def apply(self, settings: SmokeSettings) -> SmokeSettings:
        sweep = settings.sweep
        sweep = dataclasses.replace(sweep, concurrency=self.concurrency or sweep.concurrency,
                                    samples=self.samples or sweep.samples, tokens=self.tokens or sweep.tokens,
                                    depths=self.depths or sweep.depths)
        gate = settings.gate if self.threshold is None else dataclasses.replace(settings.gate, threshold=self.threshold)
        return dataclasses.replace(settings, sweep=sweep, gate=gate)


def _levels(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        levels = tuple(int(part) for part in text.split(","))
    except ValueError:
        levels = ()
    if not levels or any(not 0 < c <= 512 for c in levels) or len(set(levels)) != len(levels):
        raise InputError(f"--concurrency: {text!r} is not a list of distinct levels 1..512 (e.g. 1,2,4,8)")
    return levels


def check_floor(floor: Path | None, settings: SmokeSettings, where: str = "--floor") -> Floor | None:
    """--floor: refuse a gate threshold below this runner's measured floor (exit 2, before anything runs);
    the floor, for the gate's evidence."""
    if floor is None:
        return None
    from builder.measure.floor import below_floor, read_floor
    from builder.measure.perf import gate_levels
    try:
        measured = read_floor(floor)
    except ValueError as exc:
        raise InputError(f"--floor: {exc} (write one with --calibrate-floor)") from None
    reason = below_floor(settings.gate.threshold, gate_levels(settings), measured)
    if reason:
        raise InputError(f"{where}: {reason}")
    return measured


def _consistency(text: str | None) -> Consistency | None:
    if text is None:
        return None
    if text not in get_args(Consistency):
        raise InputError(f"--consistency: {text!r} is not exact or scored")
    return cast(Consistency, text)


def _depths(text: str | None) -> tuple[int, ...] | None:
    from builder.matrix.smoke_settings import MAX_DEPTH
    if text is None:
        return None
    try:
        depths = tuple(int(part) for part in text.split(","))
    except ValueError:
        depths = ()
    if not depths or len(depths) > 16 or any(not 0 <= d <= MAX_DEPTH for d in depths) or \
            list(depths) != sorted(set(depths)):
        raise InputError(f"--depths: {text!r} is not a list of distinct ascending prompt depths 0..{MAX_DEPTH} "
                         "(e.g. 0,4096,16384)")
    return depths


def run_url_command(url: str, known_good_url: str | None, served_name: str | None, cell_id: str | None,
                    engine: str | None, matrix: Path, overrides: SweepOverrides, accept_inconclusive: bool,
                    as_json: bool, profile_name: str | None = None, server_log: Path | None = None,
                    calibrate_floor: Path | None = None, golden_path: Path | None = None,
                    consistency: Consistency | None = None) -> None:
    from builder.engines import ENGINES, engine_module
    from builder.proof.profiles import profile_unavailable
    from builder.proof.url import check_url, smoke_url
    check_url(url, "--url")
    if known_good_url:
        check_url(known_good_url, "--known-good-url")
    if cell_id is not None:  # the cell's job: its engine module and smoke settings
        session = Session(matrix, None, None, None, None, None)
        job = session.job(session.cell(cell_id))
        if engine is not None and engine != job.cell.engine.name:
            raise InputError(f"--engine: {engine} is not the engine of --cell {cell_id} ({job.cell.engine.name})")
        settings, module = job.smoke, job.engine
    elif engine is None:
        raise InputError(f"--url: name the server's engine with --engine ({', '.join(sorted(ENGINES))}) or a cell "
                         "with --cell; their servers answer differently")
    else:
        module = engine_module(engine)  # an unknown engine is exit 2
        settings = SmokeSettings()
    profile = None
    if profile_name is not None:
        profile = next((p for p in settings.profiles if p.name == profile_name), None)
        if cell_id is None or profile is None:
            known = ", ".join(p.name for p in settings.profiles) or "none"
            raise InputError(f"--profile: {profile_name!r} is not a serve profile of "
                             f"{'--cell ' + cell_id if cell_id else 'the settings (name a --cell)'} (its profiles: {known})")
        unavailable = profile_unavailable(profile, module, job.cell.version)
        if unavailable:
            raise InputError(f"--profile {profile_name}: {unavailable}")
    log = read_log(server_log) if server_log is not None else None
    golden = read_golden_report(golden_path) if golden_path is not None else None
    final = overrides.apply(settings)
    if consistency is not None:  # the user's word for this server beats the cell's
        final = dataclasses.replace(final, consistency=consistency)
    if calibrate_floor is not None:
        if not known_good_url:
            raise InputError("--calibrate-floor: give --known-good-url, a second process of the image at --url (an A/A)")
        writable_dir(calibrate_floor.parent, "--calibrate-floor")
    runner_floor = None if calibrate_floor is not None else check_floor(overrides.floor, final)
    report = smoke_url(url, final, module, served_name=served_name, known_good_url=known_good_url,
                       accept_inconclusive=accept_inconclusive, profile=profile, server_log=log, golden=golden,
                       floor=runner_floor,
                       progress=lambda m: typer.echo(f"smoke: {m}", err=True))
    typer.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.text())
    if calibrate_floor is not None and report.gate is not None:
        from builder.measure.floor import floor_of, write_floor
        from builder.util import utc_now
        merged = write_floor(calibrate_floor, floor_of(report.gate, measured_at=utc_now(),
                                                       source=f"A/A: {known_good_url} and {url}"))
        typer.echo(f"floor written to {calibrate_floor}: " + ", ".join(
            f"c={c} {100 * v:.2f}%" for c, v in sorted(merged.levels.items())) +
            f" ({merged.runs} A/A calibration(s), {merged.pairs} pairs)", err=True)
        if all(c.status != "fail" for c in report.checks if c.name != "gate"):
            return  # an A/A's gate verdict is the calibration, not a failure
    if not report.passed:
        raise typer.Exit(1)


LOG_CAP = 16 << 20  # the first 16 MiB of a server log: its start-up lines are what is read


def read_log(path: Path) -> str:
    """--server-log: a readable regular file (its first LOG_CAP bytes); exit 2 otherwise."""
    try:
        with path.open("rb") as handle:
            if not path.is_file():
                raise InputError(f"--server-log: {path} is not a regular file")
            return handle.read(LOG_CAP).decode(errors="replace")
    except OSError as exc:
        raise InputError(f"--server-log: cannot read {path} ({exc.strerror}); give the server's log file") from None


def read_golden_report(path: Path):
    """--golden: a smoke report (JSON) with golden outputs; exit 2 with the reason otherwise."""
    from builder.proof.report import SmokeReport
    try:
        if path.stat().st_size > LOG_CAP:
            raise InputError(f"--golden: {path} is over {LOG_CAP >> 20} MiB; give a smoke report (--json)")
        report = SmokeReport.from_dict(json.loads(path.read_text()))
    except OSError as exc:
        raise InputError(f"--golden: cannot read {path} ({exc.strerror})") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"--golden: {path} is not a smoke report ({type(exc).__name__}); give the output of "
                         "builder smoke --url ... --json") from None
    if not report.golden:
        raise InputError(f"--golden: {path} has no golden outputs (its determinism check did not pass)")
    return report


def _image_ref(session, image: str) -> str:
    """The tag or digest of IMAGE, which must be in the session's repository."""
    found = session.names.reference_in_repo(image)
    if found is None:
        repo = session.names.repo
        raise InputError(f"IMAGE: {image[:80]!r} is not in {repo} (e.g. {repo}:<cell>-<hash> or {repo}@sha256:...); "
                         "smoke results are recorded beside the image in its registry")
    return found


def run_smoke_command(session, image: str | None, cell_id: str | None, options,
                      overrides: SweepOverrides = SweepOverrides()) -> None:
    from builder.pipeline import smoke_and_maybe_promote, smoke_target
    if bool(image) == bool(cell_id):
        raise InputError("give either IMAGE or --cell CELL (one of them), or --url URL")
    # Everything the arguments say is checked before the registry is contacted.
    if image:
        _image_ref(session, image)
    elif (cell_id or "") not in {c.id for c in session.expansion.cells}:
        raise InputError(f"--cell: '{(cell_id or '')[:80]}' is not a cell of the matrix (see `builder matrix`)")
    existing_dir(options.model_dir, "--model-dir")
    writable_dir(options.report_dir, "--report-dir")
    client = RegistryClient.from_environment(session.names.registry)
    client.ping()
    job, reference, digest = smoke_target(session, client, image, cell_id)
    cell = job.cell
    runner_floor = check_floor(overrides.floor, overrides.apply(job.smoke))  # before anything is booted or measured
    report = smoke_and_maybe_promote(session.names, client, job, reference, digest,
                                     dataclasses.replace(options, floor=runner_floor),
                                     settings=overrides.apply(job.smoke),
                                     progress=lambda m: typer.echo(f"{cell.id}: {m}", err=True))
    typer.echo(json.dumps(report.to_dict(), indent=2) if options.as_json else report.text())
    if not report.passed:
        if options.promote:
            typer.echo(f"{cell.id}: not promoted (the smoke test failed)", err=True)
        raise typer.Exit(1)

"""`builder smoke`: smoke-test an image of the registry (or a cell's newest) and store the report."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

import typer

from builder.cli.options import MatrixOpt, RegistryOpt, existing_dir, path_option, writable_dir
from builder.cli.session import Session
from builder.errors import InputError, StepFailed
from builder.matrix.cells import Cell
from builder.names import CELL_LABEL
from builder.oci.registry import RegistryClient
from builder.promotion.store import newest_image


def smoke_command(
    image: Optional[str] = typer.Argument(None, help="An image in the registry: REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:..."),
    cell: Optional[str] = typer.Option(None, "--cell", help="Smoke-test the newest image of this cell instead."),
    promote: bool = typer.Option(False, "--promote", help="Promote the image when every check passed."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    baseline_tps: Optional[float] = typer.Option(None, "--baseline-tps", help="Decode tok/s to compare with (default: the cell's known-good record)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", min=0.0, max=0.99, help="Allowed throughput regression (0.05 = 5%; default: the matrix's regression_threshold, 0.05 unless set)."),
    model_dir: Optional[Path] = path_option(None, "--model-dir", help="Serve this local model directory instead of the matrix's."),
    report_dir: Path = path_option("build/reports", "--report-dir", help="Where <cell>.json and <cell>.txt go."),
    matrix: Path = MatrixOpt, registry: Optional[str] = RegistryOpt,
):
    """Boot an image with its tiny model and check it: models, completions, determinism under
    concurrency, golden outputs, tool calls, throughput against the last known-good, and (GPU
    cells) the kernel audit. The report is stored beside the image in the registry.

    Example: builder smoke --cell vllm-0.32.0-cpu --promote
    """
    run_smoke_command(Session(matrix, None, None, None, None, registry), image, cell,
                      _options(promote, as_json, baseline_tps, threshold, model_dir, report_dir))


def _image_ref(session, image: str) -> str:
    """The tag or digest of IMAGE, which must be in the session's repository."""
    repo = session.names.repo
    match = re.fullmatch(rf"{re.escape(repo)}(?::(?P<tag>[\w][\w.-]{{0,127}})|@(?P<digest>sha256:[0-9a-f]{{64}}))", image)
    if not match:
        raise InputError(f"IMAGE: {image[:80]!r} is not in {repo} (e.g. {repo}:<cell>-<hash> or {repo}@sha256:...); "
                         "smoke results are recorded beside the image in its registry")
    return match.group("tag") or match.group("digest")


def resolve_target(session, client: RegistryClient, image: str | None, cell_id: str | None) -> tuple[Cell, str, str]:
    """(cell, runnable reference, digest) for `builder smoke IMAGE` or `--cell CELL`."""
    repository, repo = session.names.repository, session.names.repo
    cells = {c.id: c for c in session.expansion.cells}
    if image:
        info = client.head_manifest(repository, _image_ref(session, image))
        if info is None:
            raise StepFailed(f"{image} is not in the registry")
        cell_id = client.image_labels(repository, info.digest).get(CELL_LABEL)
        if cell_id not in cells:
            raise InputError(f"{image} is labelled cell '{cell_id}', which is not a cell of {session.matrix.path}")
        return cells[cell_id], image, info.digest
    if cell_id not in cells:
        raise InputError(f"--cell: '{cell_id}' is not a cell of the matrix (see `builder matrix`)")
    tag, digest = newest_image(client, repository, cell_id)
    return cells[cell_id], f"{repo}:{tag}", digest


def _options(*args):
    from builder.pipeline import SmokeOptions  # the Docker SDK only where it is used (not on a GPU host)
    return SmokeOptions(*args)


def run_smoke_command(session, image: str | None, cell_id: str | None, options) -> None:
    from builder.pipeline import smoke_and_maybe_promote
    if bool(image) == bool(cell_id):
        raise InputError("give either IMAGE or --cell CELL (one of them)")
    # Everything the arguments say is checked before the registry is contacted.
    if image:
        _image_ref(session, image)
    elif cell_id not in {c.id for c in session.expansion.cells}:
        raise InputError(f"--cell: '{cell_id[:80]}' is not a cell of the matrix (see `builder matrix`)")
    if options.baseline_tps is not None and not options.baseline_tps > 0:
        raise InputError(f"--baseline-tps: {options.baseline_tps} must be a positive decode rate (tok/s)")
    existing_dir(options.model_dir, "--model-dir")
    writable_dir(options.report_dir, "--report-dir")
    client = RegistryClient.from_environment(session.names.registry)
    client.ping()
    cell, reference, digest = resolve_target(session, client, image, cell_id)
    report = smoke_and_maybe_promote(session.names, client, cell, reference, digest, options,
                                     progress=lambda m: typer.echo(f"{cell.id}: {m}", err=True))
    typer.echo(json.dumps(report.to_dict(), indent=2) if options.as_json else report.text())
    if not report.passed:
        if options.promote:
            typer.echo(f"{cell.id}: not promoted (the smoke test failed)", err=True)
        raise typer.Exit(1)

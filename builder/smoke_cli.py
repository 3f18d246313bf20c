"""`builder smoke` and the smoke/promote steps of `builder build --smoke --promote`."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import typer

from . import engine
from .cells import Cell
from .errors import InputError, StepFailed
from .knowngood import RecordStore
from .names import CELL_LABEL, CREATED_LABEL, immutable_tag_pattern
from .promote import promote
from .registry import RegistryClient
from .smoke import SmokeInputs, SmokeReport, run_smoke


@dataclass(frozen=True)
class SmokeOptions:
    promote: bool = False
    as_json: bool = False
    baseline_tps: float | None = None
    threshold: float | None = None  # None: the matrix's regression_threshold
    model_dir: Path | None = None
    report_dir: Path = Path("build/reports")


def newest_image(client: RegistryClient, repository: str, cell_id: str) -> tuple[str, str]:
    """(tag, digest) of the most recently created immutable image of a cell in the registry."""
    pattern = immutable_tag_pattern(cell_id)
    found = []
    for tag in client.tags(repository):
        if pattern.match(tag):
            created = client.image_labels(repository, tag).get(CREATED_LABEL, "")
            found.append((created, tag))
    if not found:
        raise StepFailed(f"no image of {cell_id} in {client.host}/{repository}: run `builder build --cell {cell_id}`")
    tag = max(found)[1]
    return tag, client.head_manifest(repository, tag).digest


def resolve_target(session, client: RegistryClient, image: str | None, cell_id: str | None) -> tuple[Cell, str, str]:
    """(cell, runnable reference, digest) for `builder smoke IMAGE` or `--cell CELL`."""
    repository, repo = session.names.repository, session.names.repo
    cells = {c.id: c for c in session.expansion.cells}
    if image:
        match = re.fullmatch(rf"{re.escape(repo)}(?::(?P<tag>[\w.-]+)|@(?P<digest>sha256:[0-9a-f]{{64}}))", image)
        if not match:
            raise InputError(f"IMAGE must be in {repo} (e.g. {repo}:<cell>-<hash> or {repo}@sha256:...); "
                             "smoke results are recorded beside the image in its registry")
        info = client.head_manifest(repository, match.group("tag") or match.group("digest"))
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


def smoke_and_maybe_promote(session, client: RegistryClient, cell: Cell, image: str, digest: str,
                            options: SmokeOptions, progress=lambda message: None) -> SmokeReport:
    store = RecordStore(client, session.names.repository)
    record = store.get_known_good(cell.id)
    explicit = options.baseline_tps is not None
    baseline = options.baseline_tps if explicit else (record.throughput_tps if record else None)
    inputs = SmokeInputs(cell.id, cell.arch.name, cell.arch.gpu, image, digest,
                         cell.engine.smoke_for(cell.arch.name),
                         golden=record.golden if record else None,
                         golden_model=record.smoke_summary.get("model") if record else None,
                         baseline_tps=baseline, threshold=options.threshold, model_dir=options.model_dir,
                         # a recorded baseline counts only if measured the same way (model, token count)
                         baseline_measure=None if explicit or not record else (
                             record.smoke_summary.get("model"), record.smoke_summary.get("throughput_tokens")),
                         pull_auth=client.docker_auth())
    report = run_smoke(engine.connect(), inputs, progress)
    store.put_smoke_report(digest, report.to_dict())
    options.report_dir.mkdir(parents=True, exist_ok=True)
    (options.report_dir / f"{cell.id}.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    (options.report_dir / f"{cell.id}.txt").write_text(report.text() + "\n")
    if options.promote and report.passed:
        result = promote(client, session.names.repository, cell.id, digest)
        progress(result.message)
    return report


def smoke_command(session, image: str | None, cell_id: str | None, options: SmokeOptions) -> None:
    if options.threshold is not None and options.threshold >= 1:
        raise InputError("--threshold must be below 1 (0.05 = 5%)")
    if bool(image) == bool(cell_id):
        raise InputError("give either IMAGE or --cell CELL (one of them)")
    client = RegistryClient.from_environment(session.names.registry)
    client.ping()
    cell, reference, digest = resolve_target(session, client, image, cell_id)
    report = smoke_and_maybe_promote(session, client, cell, reference, digest, options,
                                     progress=lambda m: typer.echo(f"{cell.id}: {m}", err=True))
    typer.echo(json.dumps(report.to_dict(), indent=2) if options.as_json else report.text())
    if not report.passed:
        if options.promote:
            typer.echo(f"{cell.id}: not promoted (the smoke test failed)", err=True)
        raise typer.Exit(1)

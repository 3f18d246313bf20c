"""One cell through the stages after its build: smoke-test the image, store the report, promote it
when every check passed. `builder build --smoke --promote` and `builder smoke` both run this."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from builder.attest.attach import Attestor, for_cell
from builder.buildkit.runner import CellResult
from builder.errors import InputError, StepFailed
from builder.jobs.job import CellJob
from builder.jobs.workspace import Workspace
from builder.matrix.smoke_settings import SmokeSettings
from builder.measure.floor import Floor
from builder.names import CELL_LABEL, ImageNames
from builder.oci import dockerd
from builder.oci.registry import RegistryClient
from builder.promotion.promote import promote
from builder.promotion.store import RecordStore, newest_image
from builder.proof.report import SmokeReport
from builder.proof.run import SmokeInputs, run_smoke
from builder.smoke.golden_scores import read_golden_scores


@dataclass(frozen=True)
class SmokeOptions:
    promote: bool = False
    as_json: bool = False
    accept_inconclusive: bool = False  # promote when the gate stayed inconclusive at its cap
    threshold: float | None = None  # None: the matrix's gate.threshold
    model_dir: Path | None = None
    report_dir: Path = Path("build/reports")
    attestor: Attestor | None = None  # signs and attaches the attestations before the tag moves; None: unsigned
    known_good_cell: str | None = None  # the baseline's cell when not the image's own (`builder watch`: a new version)
    floor: Floor | None = None  # this runner's gate floor (--floor), named in the gate's evidence


def smoke_and_maybe_promote(names: ImageNames, client: RegistryClient, job: CellJob, image: str, digest: str,
                            options: SmokeOptions, progress=lambda message: None,
                            settings: SmokeSettings | None = None,
                            built: Mapping[str, str] | None = None) -> SmokeReport:
    """Smoke-test one job's image, store the report, promote it when asked and every check passed.
    `built`: images this run built, by cell id; a model helper built here is used before it is promoted."""
    cell = job.cell
    store = RecordStore(client, names.repository)
    record = store.get_known_good(options.known_good_cell or cell.id)
    settings = settings or job.smoke
    if options.threshold is not None:  # --threshold wins over the matrix's gate.threshold
        settings = dataclasses.replace(settings, gate=dataclasses.replace(settings.gate, threshold=options.threshold))
    helper = settings.model_helper
    inputs = SmokeInputs(cell_id=cell.id, engine=job.engine, arch=cell.arch.name, gpu=cell.arch.gpu,
                         image=image, digest=digest, settings=settings,
                         golden=record.golden if record else None,
                         golden_model=record.smoke_summary.get("model") if record else None,
                         golden_profiles=record.golden_profiles if record else {},
                         golden_scores=read_golden_scores(record.golden_scores) if record else {},
                         # the gate's baseline: the known-good image itself, measured beside the candidate
                         known_good_image=record.image if record else None,
                         known_good_sweep=record.sweep_result() if record else None,
                         accept_inconclusive=options.accept_inconclusive or settings.gate.accept_inconclusive,
                         floor=options.floor,
                         model_dir=options.model_dir, pull_auth=client.docker_auth(), engine_version=cell.version,
                         helper_image=((built or {}).get(helper) or names.friendly(helper)) if helper else None)
    report = run_smoke(dockerd.connect(), inputs, progress)
    store.put_smoke_report(digest, report)
    options.report_dir.mkdir(parents=True, exist_ok=True)
    (options.report_dir / f"{cell.id}.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    (options.report_dir / f"{cell.id}.txt").write_text(report.text() + "\n")
    if options.promote and report.passed:
        attestor = for_cell(options.attestor, cell, job.patches) if options.attestor else None
        result = promote(client, names.repository, cell.id, digest, attestor=attestor)
        progress(result.message)
    return report


def smoke_target(workspace: Workspace, client: RegistryClient, image: str | None,
                 cell_id: str | None) -> tuple[CellJob, str, str]:
    """(job, runnable reference, digest) for `builder smoke IMAGE` (its cell from its labels) or `--cell CELL`
    (the cell's newest image)."""
    repository, repo = workspace.names.repository, workspace.names.repo
    if image:
        info = client.head_manifest(repository, workspace.names.reference_in_repo(image) or image)
        if info is None:
            raise StepFailed(f"{image} is not in the registry")
        labelled = client.image_labels(repository, info.digest).get(CELL_LABEL, "")
        cells = {c.id: c for c in workspace.expansion.cells}
        if labelled not in cells:
            raise InputError(f"{image} is labelled cell '{labelled}', which is not a cell of {workspace.matrix.path}")
        return workspace.job(cells[labelled]), image, info.digest
    cell = workspace.cell(cell_id or "")
    tag, digest = newest_image(client, repository, cell.id)
    return workspace.job(cell), f"{repo}:{tag}", digest


def smoke_built(names: ImageNames, client: RegistryClient, jobs: list[CellJob], results: list[CellResult],
                workdir: Path, promote: bool, say: Callable[[str], None],
                accept_inconclusive: bool = False, attestor: Attestor | None = None,
                floor: Floor | None = None) -> dict[str, str]:
    """Smoke-test (and promote) every image the build produced, in the jobs' order (a model helper
    before the cells that need it); one cell after another, since a smoke test needs the machine's
    memory (and GPU) to itself."""
    by_id = {job.id: job for job in jobs}
    built = {result.cell_id: result.image for result in results if result.ok and result.image}
    verdicts: dict[str, str] = {}
    for result in results:
        if not result.ok:
            continue
        helper = by_id[result.cell_id].smoke.model_helper
        if helper and verdicts.get(helper, "passed").startswith("FAILED"):  # its model would come from a bad image
            verdicts[result.cell_id] = f"FAILED (not smoked: its model helper {helper} failed)"
            continue
        report = smoke_and_maybe_promote(
            names, client, by_id[result.cell_id], result.image, result.digest,
            SmokeOptions(promote=promote, accept_inconclusive=accept_inconclusive, report_dir=workdir / "reports",
                         attestor=attestor, floor=floor),
            progress=lambda m, cell=result.cell_id: say(f"{cell}: {m}"), built=built)
        say(report.text())
        verdicts[result.cell_id] = ("passed" + (", promoted" if promote else "")) if report.passed else \
            f"FAILED (report {workdir / 'reports' / (result.cell_id + '.txt')})"
    return verdicts

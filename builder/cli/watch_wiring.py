"""`builder watch --build`: the judge's parts wired to the candidate's build, the pipeline (smoke, gate,
promotion) and the bisect session (culprit and re-check), for the cells of one workspace."""

from __future__ import annotations

from pathlib import Path

from builder.jobs.workspace import Workspace
from builder.oci.registry import RegistryClient
from builder.promotion.store import RecordStore
from builder.watch.candidate import CandidateBuilder
from builder.watch.culprit import Culprit, find_culprit
from builder.watch.evaluate import Proposer
from builder.watch.judge import Judge
from builder.watch.loop import Target
from builder.watch.releases import Release


def make_judge(session: Workspace, client: RegistryClient, store: RecordStore, proposer: Proposer, *,
               promote: bool, repos: dict[str, Path], say, candidates: CandidateBuilder) -> Judge:
    from builder.bisect.errors import BisectInputError
    from builder.errors import InputError
    from builder.oci import dockerd
    from builder.pipeline import SmokeOptions, smoke_and_maybe_promote

    def image_of(target: Target, release: Release, proposed: Path) -> tuple[str, str] | None:
        if release.kind != "image":
            return candidates.build(target, release, proposed)  # the proposal's candidate cell, built and pushed
        return f"{release.package.rsplit(':', 1)[0]}@{release.pin}", release.pin

    def smoke(target: Target, release: Release, proposed: Path, image: str, digest: str):
        work = Workspace(proposed, session.names.registry)
        job = work.job(work.cell(target.candidate_cell(release.label)))
        options = SmokeOptions(promote=promote, known_good_cell=target.cell,
                               report_dir=candidates.inputs.workdir / "reports")
        return smoke_and_maybe_promote(work.names, client, job, image, digest, options,
                                       progress=lambda m: say(f"{job.id}: {m}"))

    def culprit(target: Target, release: Release, metric: str) -> Culprit | None:
        path = repos.get(target.engine)
        if path is None or store.get_known_good(target.cell) is None:
            return None
        try:
            request = bisect_request(session, client, store, target, release, metric, path)
        except (InputError, BisectInputError) as exc:
            return Culprit(bisect={"error": str(exc)}, recheck={"status": "not run", "why": "no commits to bisect"})
        cell = request.job.cell
        return find_culprit(dockerd.connect(), request, cache_root=None,
                            store=lambda key, data: f"{client.host}/{store.repo}:{store.put_bisect(cell.id, key, data)}",
                            log=lambda m: say(f"{cell.id} bisect: {m}"))

    return Judge(proposer=proposer, image_of=image_of, smoke=smoke, culprit=culprit, promote=promote,
                 pins=candidates.pins)


def bisect_request(session: Workspace, client: RegistryClient, store: RecordStore, target: Target, release: Release,
                   metric: str, path: Path):
    """The bisect of a regressed release, as `builder bisect --cell <known-good cell> --good <its version> --bad
    <the release's commit>` makes it: the known-good image as the good endpoint, tier 1 (release commits of the
    matrix's versions use their known-good images) and tier 4 (a full build at a commit, for a source cell: a
    llama.cpp release has no Python to overlay, every other commit is a build)."""
    from builder.bisect.candidates import GitRepo
    from builder.bisect.refs import resolve_ref, version_images
    from builder.bisect.session import BisectRequest
    from builder.bisect.settings import MeasureSettings
    from builder.cli.bisect import full_build_settings

    record = store.get_known_good(target.cell)
    git = GitRepo(path=path)
    cell = session.cell(target.cell)
    good = resolve_ref(target.known_label, "--good", cell, session.expansion.cells, git.resolve).sha
    bad = release.pin if release.kind == "git" else _release_commit(git, release)

    def known_good(cell_id: str) -> str | None:
        found = store.get_known_good(cell_id)
        return found.image if found else None
    job = session.job(cell)
    helper = job.smoke.model_helper
    return BisectRequest(job=job, repo=path, good=good, bad=bad, image=record.image if record else None,
                         # throughput: the effect that counts is the one the cell's gate refused
                         settings=MeasureSettings(metric=metric,  # type: ignore[arg-type]
                                                  min_effect=job.smoke.gate.threshold),
                         pull_auth=client.docker_auth(),
                         helper_image=session.names.friendly(helper) if helper else None,
                         known_images=version_images(cell, session.expansion.cells, git.resolve, known_good),
                         full_build=full_build_settings(session, cell))


def _release_commit(git, release: Release) -> str:
    from builder.bisect.errors import BisectInputError
    from builder.errors import BuilderError
    for name in (f"v{release.label}", release.label):
        try:
            return str(git.resolve(name))
        except BuilderError:
            continue
    raise BisectInputError(f"the repository has no tag v{release.label} or {release.label}: fetch its tags")

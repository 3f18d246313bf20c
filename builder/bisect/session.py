"""One `builder bisect` from validated inputs to the stored answer (side effects: git, the Docker
Engine, the registry). The CLI validates every argument first (cli/bisect.py); this module assumes it.

    candidates  list_candidates over the local repository (first-parent, --paths)
    endpoints   good = the image that carries the good commit (--image, else the --images upstream
                image of the good commit, else the cell's known-good record; --build-good: a full build
                of the good commit); bad = made by the ladder as a step is: the upstream image of the bad
                commit when --images has one, else a python overlay over the good image, else (a source
                cell) a full build of the bad commit
    reference   Measurer.reference(): the endpoints compared first; a bad endpoint that does not show
                the problem stops the bisect (BisectError) before any step
    steps       run_bisect with ImageMaker (tiers 1-2 pulled, tier 3 built, tier 4 fullbuild.py's for source
                cells and a skip for the others), the kernel
                audit (GPU cells; cpu cells skip it with the reason) and the Measurer
    answer      render_text / to_json plus the build timings and the reference, written to
                <cache>/bisect/results/ and stored in the registry as `bisect-<cell>-<key>`
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker

from builder.errors import StepFailed
from builder.jobs.job import CellJob
from builder.names import label_patches
from builder.oci import dockerd
from builder.oci.credentials import docker_config_credentials
from builder.oci.reference import parse_reference
from builder.oci.registry import RegistryClient
from builder.smoke.model import model_needs_helper
from builder.smoke.openai import ServerError

from .cache import bisect_dir, write_json_atomic
from .candidates import GitRepo, list_candidates
from .classify import ClassifyRules
from .driver import BisectJob, Endpoints, Stages, run_bisect
from .errors import BisectError, BisectInterrupted
from .fullbuild import FullBuilder, FullBuildSettings
from .images import ImageMaker
from .ladder import StepPlan, plan_step
from .measure import Measurer, ServerTemplate
from .model import BisectResult, StepRecord
from .report import render_text, to_json
from .settings import MeasureSettings
from .sourcebuild import full_build_problem
from .upstream import UpstreamImages, registry_head


@dataclass(frozen=True, kw_only=True)
class BisectRequest:
    job: CellJob  # the cell: its engine module (server, hooks, package directory) and smoke settings
    repo: Path
    good: str  # commits of repo
    bad: str
    image: str | None  # the good commit's image: a reference the Engine can run or pull (None: from `images`)
    settings: MeasureSettings = field(default_factory=MeasureSettings)
    paths: tuple[str, ...] = ()
    package_dir: str | None = None  # the engine's package directory in repo (None: the engine module's)
    first_parent: bool = True
    pull_auth: dict | None = None
    model_dir: Path | None = None  # serve this model instead of the cell's smoke model
    ready_timeout: int | None = None  # seconds a server may take to boot (default: the cell's ready_timeout)
    images: str | None = None  # tier 2: an image per engine commit, 'REGISTRY/REPO:nightly-{sha}' (upstream.py)
    registry_for: Callable[[str], Any] | None = None  # host -> RegistryClient, for tier 2 lookups and pulls
    known_images: dict[str, str] = field(default_factory=dict)  # tier 1: release commit -> known-good image
    helper_image: str | None = None  # makes a generated GGUF smoke model (the cell's smoke.model_helper)
    full_build: FullBuildSettings | None = None  # tier 4 for a source cell (None: full-build steps are skips)
    build_good: bool = False  # the good endpoint is a full build of `good`, not `image`


@dataclass(frozen=True, kw_only=True)
class BisectOutcome:
    result: BisectResult
    text: str
    data: dict[str, Any]
    key: str  # 16 hex digits: the registry tag is bisect-<cell>-<key>
    result_file: Path


def result_key(cell: str, good: str, bad: str, image: str, settings: dict[str, Any], paths: tuple[str, ...]) -> str:
    blob = json.dumps([cell, good, bad, image, settings, sorted(paths)], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cell_audit(client: docker.DockerClient, job: CellJob) -> tuple[Callable[[str], str | None], str]:
    """The kernel audit for run_bisect, and the note that says when it was skipped."""
    cell = job.cell
    if not cell.arch.gpu:
        return (lambda digest: None), "kernel audit skipped: cpu cell, no CUDA kernels"
    from builder.audit.image import kernel_audit
    optional = job.smoke.audit_optional

    def audit(digest: str) -> str | None:
        result = kernel_audit(client, digest, job.engine, cell.arch.name, True, optional)
        return None if result.status != "fail" else result.evidence
    return audit, ""


def server_template(client: docker.DockerClient, job: CellJob, image: str, model_dir: Path | None,
                    ready_timeout: int | None = None, helper_image: str | None = None,
                    pull_auth: dict | None = None) -> ServerTemplate:
    """How every image of the bisect is served and checked: the cell's engine, smoke settings and model."""
    from builder.smoke.model import resolve_model
    model = resolve_model(job.smoke, image, client, engine=job.engine, override=model_dir, gpu=job.cell.arch.gpu,
                          helper_image=helper_image, pull_auth=pull_auth)
    return ServerTemplate.for_job(job, model.directory, model.file, ready_timeout)


def run_request(client: docker.DockerClient, request: BisectRequest, *, cache_root: Path | None = None,
                log: Callable[[str], None] = lambda m: None,
                on_step: Callable[[StepRecord], None] | None = None,
                store: Callable[[str, dict[str, Any]], str] | None = None) -> BisectOutcome:
    """Bisect; `store(key, data)` puts the answer in the registry and returns where (the CLI passes
    RecordStore.put_bisect). Interrupts raise BisectInterrupted with the state saved (during the
    steps: run_bisect saves it; before them nothing but finished images and the cached reference
    exists, and a rerun finds both)."""
    try:
        return _run_request(client, request, cache_root=cache_root, log=log, on_step=on_step, store=store)
    except KeyboardInterrupt:
        raise BisectInterrupted(bisect_dir(cache_root) / "sessions") from None


def _run_request(client: docker.DockerClient, request: BisectRequest, *, cache_root: Path | None,
                 log: Callable[[str], None], on_step: Callable[[StepRecord], None] | None,
                 store: Callable[[str, dict[str, Any]], str] | None) -> BisectOutcome:
    cell = request.job.cell
    rules = ClassifyRules(package_dir=request.package_dir or request.job.engine.package_dir)
    repo = GitRepo(path=request.repo)
    candidates = list_candidates(repo, request.good, request.bad, paths=request.paths,
                                 first_parent=request.first_parent, rules=rules)
    log(f"{len(candidates)} candidates ({len(candidates) - 2} between good and bad)")
    clients = functools.cache(request.registry_for or docker_login_client)  # one client per registry host
    check_model_helper(client, request, clients)  # before any build: a llama.cpp endpoint takes ~10 min
    upstream = UpstreamImages(request.images, registry_head(clients), log) if request.images else None
    build_settings = request.full_build
    problem = full_build_problem(cell) or ("" if build_settings else "no full-build settings were given")
    builder = FullBuilder(client, request.job, repo, build_settings, bisect_dir(cache_root) / "builds", log) \
        if build_settings and not problem else None
    maker = ImageMaker(client, repo, cell_id=cell.id, mode=cell.mode, package_dir=rules.package_dir, log=log,
                       pull_auth=lambda ref: _pull_auth(request, clients, ref), full_build=builder,
                       no_full_build=problem)
    if request.build_good:
        if builder is None:
            raise BisectError(f"--build-good: {cell.id} cannot be built at a commit: {problem}")
        first = StepPlan(index=0, sha=candidates[0].sha, tier="full-build", reason="--build-good")
        good_ref: str | None = _made(maker, first, "the good endpoint")
    else:
        good_ref = request.image or (upstream(candidates[0]) if upstream else None)
    if good_ref is None:
        raise BisectError(f"no image for the good commit {candidates[0].short}: "
                          f"{upstream.reference(candidates[0].sha) if upstream else 'no --images template'} "
                          "is not in its registry; give --image")
    dockerd.ensure_image(client, good_ref, _pull_auth(request, clients, good_ref))
    good_image = client.images.get(good_ref)
    # the smoke model before the bad endpoint is made: a conversion that fails costs no second build
    template = server_template(client, request.job, good_ref, request.model_dir, request.ready_timeout,
                               request.helper_image, request.pull_auth)
    # "none" is the label of an image without patches (a sentinel, never a patch id)
    patches = tuple(pid for pid, _ in label_patches(good_image.labels or {}))
    maker.patches = patches  # re-applied over each python overlay of it
    if upstream and patches:
        log(f"--images ignored: the good image carries patches ({', '.join(patches)}) that upstream images lack; "
            "every step is a python overlay instead")
        upstream = None
    lookups: dict[str, Any] = {"upstream": upstream} if upstream else {}  # the ladder's tiers 1 and 2
    if request.known_images:
        lookups["registry"] = lambda cand: request.known_images.get(cand.sha)
    endpoints = Endpoints(good=good_image.id, bad=_bad_endpoint(candidates, good_image.id, maker, repo, rules, lookups))
    settings = request.settings.to_dict()
    job = BisectJob(cell=cell.id, candidates=candidates, endpoints=endpoints, diff=repo.diff,
                    settings=settings, rules=rules, paths=request.paths)
    audit, audit_note = cell_audit(client, request.job)
    root = bisect_dir(cache_root)
    with Measurer(client, template, request.settings, cell_id=cell.id, endpoints=endpoints, cache_dir=root,
                  audit_note=audit_note, log=log) as measure:
        reference = compare_endpoints(measure, endpoints)
        log(f"reference: {_reference_line(reference)}")
        stages = Stages(make_image=maker, audit=audit, measure=measure, skip_on=(StepFailed,), on_step=on_step,
                        **lookups)
        result = run_bisect(job, stages, cache_root=cache_root)
    key = result_key(cell.id, candidates[0].sha, candidates[-1].sha, endpoints.good, settings, request.paths)
    data = {**to_json(result), "metric": request.settings.metric, "settings": settings,
            "endpoints": {"good_image": endpoints.good, "bad_image": endpoints.bad, "image": good_ref,
                          "images": request.images},
            "reference": {k: v for k, v in reference.items() if not k.endswith("_outputs")},
            "builds_timing": [vars(t) for t in maker.timings],
            "boots": measure.boots, "images": {str(i): d for i, d in sorted(job_images(result).items())}}
    text = render_text(result) + _footer(reference, maker)
    result_file = root / "results" / f"{cell.id}-{key}.json"
    write_json_atomic(result_file, data)
    if store is not None:
        where = store(key, data)
        text += f"stored: {where}\n"
    return BisectOutcome(result=result, text=text, data=data, key=key, result_file=result_file)


def check_model_helper(client: docker.DockerClient, request: BisectRequest,
                       clients: Callable[[str], RegistryClient]) -> None:
    """The image that makes the cell's generated GGUF smoke model (smoke.model_helper) is in the local Engine
    or its registry, before anything is built; asked even when the model is cached, since which model a
    commit's converter makes is known only once that commit's image exists."""
    smoke = request.job.smoke
    helper = request.helper_image
    if not model_needs_helper(smoke, request.model_dir) or helper is None:  # None: resolve_model says why
        return
    ref = parse_reference(helper)
    if dockerd.image_id(client, helper) or clients(ref.api_host).head_manifest(ref.repository, ref.ref):
        return
    cell = smoke.model_helper or ref.tag
    raise StepFailed(f"{request.job.cell.id}: its smoke model {smoke.model} is made inside {helper} "
                     f"(smoke.model_helper), which is neither in the local Docker Engine nor in {ref.api_host}: "
                     f"build and promote {cell} first (builder build --cell {cell} --smoke --promote), "
                     "or give --model-dir DIR holding one .gguf file")


def compare_endpoints(measure: Any, endpoints: Endpoints) -> dict[str, Any]:
    """The endpoints compared first; an endpoint whose server errors is a one-line BisectError (it gave a
    traceback: a llama-server of llama-cpp-python 0.3.34 answers /v1/completions with HTTP 500 for the
    tiny model), since without both endpoints' answers nothing can be judged."""
    try:
        return measure.reference()
    except ServerError as exc:
        raise BisectError(f"the endpoints could not be compared (good {endpoints.good[:19]}, bad "
                          f"{endpoints.bad[:19]}): {str(exc).splitlines()[0]}") from None


def docker_login_client(host: str) -> RegistryClient:
    """A registry with only what `docker login HOST` stored: the factory's BUILDER_REGISTRY_*
    credentials never go to another host."""
    user, password = docker_config_credentials(host) or (None, None)
    return RegistryClient(host, user, password)


def _pull_auth(request: BisectRequest, clients: Callable[[str], RegistryClient], reference: str) -> dict | None:
    if not request.images:
        return request.pull_auth
    return clients(parse_reference(reference).api_host).docker_auth()


def _bad_endpoint(candidates, good_id: str, maker: ImageMaker, repo: GitRepo, rules: ClassifyRules,
                  lookups: dict[str, Any]) -> str:
    """The bad commit's image, made as a step's would be (the ladder against the good image): its
    registry or upstream image, else a python overlay of it over the good image."""
    plan = plan_step(candidates, len(candidates) - 1, images={0: good_id}, diff=repo.diff, rules=rules, **lookups)
    if plan.tier == "full-build" and maker.full_build is None:
        raise BisectError(f"the bad endpoint {candidates[-1].short} cannot be made over the good image ({plan.reason}) "
                          f"and not by a full build: {maker.no_full_build}")
    if plan.reuses_base:
        raise BisectError(f"good and bad differ in no file under {rules.package_dir}/: the same image")
    return _made(maker, plan, "the bad endpoint")


def _made(maker: ImageMaker, plan: StepPlan, what: str) -> str:
    """An endpoint's image id (BisectError when it cannot be made: without both endpoints there is no bisect)."""
    try:
        made = maker(plan)
    except StepFailed as exc:
        raise BisectError(f"cannot make {what}'s image: {str(exc).splitlines()[0]}") from None
    if made.digest is None:
        raise BisectError(f"cannot make {what}'s image: {made.skip_reason}")
    return made.digest


def job_images(result: BisectResult) -> dict[int, str]:
    return {s.index: s.digest for s in result.steps if s.digest}


def _reference_line(reference: dict[str, Any]) -> str:
    if reference.get("metric") == "throughput":
        return (f"bad/good = {reference['ratio']:.3f} [{reference['ci_low']:.3f}, {reference['ci_high']:.3f}] "
                f"({reference['bad_tps']:.1f} vs {reference['good_tps']:.1f} tok/s); a step is bad below "
                f"{1 - reference['threshold']:.3f}")
    if reference.get("metric") == "golden":
        changed = sum(1 for p in reference["good_outputs"] if reference["bad_outputs"].get(p) != reference["good_outputs"][p])
        return f"the bad endpoint changes {changed} of {len(reference['good_outputs'])} greedy outputs"
    return f"the bad endpoint fails {', '.join(reference['bad_failed'])}"


def _footer(reference: dict[str, Any], maker: ImageMaker) -> str:
    built = [t for t in maker.timings if not t.reused and t.tier == "python-overlay"]
    lines = [f"reference: {_reference_line(reference)}"]
    if built:
        secs = ", ".join(f"{t.seconds:.1f}s" for t in built)
        lines.append(f"python-overlay builds: {len(built)} ({secs}); step images stay local "
                     f"(llm-factory-bisect/{maker.cell_id.lower()}:<hash>), nothing is pushed")
    full = [t for t in maker.timings if t.tier == "full-build"]
    if full:
        lines.append(f"full builds: {sum(1 for t in full if not t.reused)} (in build order; step images stay local, "
                     "nothing is pushed)")
        lines += [f"  {t.describe()}" for t in full]
    return "\n".join(lines) + "\n"


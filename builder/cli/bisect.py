"""`builder bisect`: find the engine commit that made a cell's image slow or wrong.

Every argument is validated here, before any registry or Docker Engine call (one-line errors, exit 2):
the cell, the metric and its numbers, the --paths globs, the repository and both commits, the image
reference, --model-dir against the cell's engine's model formats, --build-good against the cell's mode.
Then builder.bisect.session runs it; Ctrl-C exits 130 with the state saved.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import typer

from builder import grammar
from builder.cli.options import MatrixOpt, RegistryOpt
from builder.cli.session import Session
from builder.engines import model_dir_problem
from builder.errors import InputError

METRICS = ("throughput", "golden", "checks")


def bisect_command(
    cell: str = typer.Option(..., "--cell", help="The cell whose image regressed, e.g. vllm-0.32.0-cpu."),
    good: str = typer.Option(..., "--good", help="A good revision of --repo, or an engine version of the matrix (its tag in --repo)."),
    bad: str = typer.Option(..., "--bad", help="A later bad revision of --repo, or an engine version of the matrix."),
    metric: str = typer.Option("throughput", "--metric", help="throughput (A/B gate), golden (greedy outputs) or checks (smoke checks)."),
    concurrency: int = typer.Option(1, "--concurrency", help="Concurrent streamed requests per throughput sample."),
    paths: list[str] | None = typer.Option(None, "--paths", help="Only commits touching these globs (repeat), e.g. 'vllm/v1/**'."),
    repo: Path | None = typer.Option(None, "--repo", help="A local git repository holding the engine's Python package."),
    image: str | None = typer.Option(None, "--image", help="The good commit's image (default: the known-good record of the cell, or of --good's version cell)."),
    images: str | None = typer.Option(None, "--images", help="An image per engine commit, e.g. 'REGISTRY/vllm/vllm-openai:nightly-{sha}' ({sha}, {short}): used for the endpoints and any candidate that has one (tier 2)."),
    package_dir: str | None = typer.Option(None, "--package-dir", help="The engine's package directory in --repo (default: the engine module's, e.g. vllm)."),
    max_tokens: int = typer.Option(64, "--max-tokens", help="Tokens per request (throughput: decoded with ignore_eos)."),
    prompts: int = typer.Option(6, "--prompts", help="Golden: how many of the smoke prompts (1-6)."),
    valid_utf8: bool = typer.Option(False, "--valid-utf8", help="Golden: keep greedy outputs valid UTF-8 (llama.cpp: a grammar), so servers that fail on malformed UTF-8 (llama-servers before llama-cpp-python 0.3.36's tree) can be compared; outputs then differ from the smoke run's."),
    pairs: int = typer.Option(4, "--pairs", help="Throughput: ABBA pairs per step (more on a retry)."),
    min_effect: float = typer.Option(0.05, "--min-effect", help="Throughput: the bad endpoint must be slower by more than this."),
    model_dir: Path | None = typer.Option(None, "--model-dir", help="Serve this model directory instead of the cell's smoke model (a Hugging Face directory, or one with a single .gguf file for a GGUF engine)."),
    build_good: bool = typer.Option(False, "--build-good", help="Make GOOD's image by a full build of --repo at GOOD (source cells), instead of --image or the known-good record."),
    ready_timeout: int | None = typer.Option(None, "--ready-timeout", help="Seconds a server may take to boot (default: the cell's)."),
    as_json: bool = typer.Option(False, "--json", help="Print the answer as JSON."),
    no_store: bool = typer.Option(False, "--no-store", help="Do not store the answer in the registry."),
    matrix: Path = MatrixOpt, registry: str | None = RegistryOpt,
):
    """Bisect the commits between GOOD and BAD: each step is an image made the cheapest way (a python
    overlay over an image this bisect already has, in seconds), audited, then measured against both
    endpoints in the same session. Steps are cached; an interrupted bisect resumes.

    Example: builder bisect --cell vllm-0.32.0-cpu --repo ../vllm --good v0.32.0 --bad main --metric golden
    """
    from builder.bisect.candidates import GitRepo  # git only: no Docker here yet
    from builder.bisect.classify import glob_regex
    from builder.bisect.refs import resolve_ref
    from builder.bisect.settings import MeasureSettings
    from builder.bisect.sourcebuild import check_origin, full_build_problem
    from builder.bisect.upstream import check_template

    if metric not in METRICS:
        raise InputError(f"--metric must be one of {', '.join(METRICS)}, got '{metric}'")
    for value, name, low, high in ((concurrency, "--concurrency", 1, 256), (max_tokens, "--max-tokens", 4, 4096),
                                   (pairs, "--pairs", 3, 100), (prompts, "--prompts", 1, 6)):
        if not low <= value <= high:
            raise InputError(f"{name} must be between {low} and {high}, got {value}")
    if ready_timeout is not None and not 10 <= ready_timeout <= 7200:
        raise InputError(f"--ready-timeout must be between 10 and 7200 seconds, got {ready_timeout}")
    if not 0 < min_effect < 0.9:
        raise InputError(f"--min-effect must be a fraction between 0 and 0.9, got {min_effect}")
    globs = tuple(paths or ())
    for glob in globs:
        if not glob.strip() or glob.startswith("-"):
            raise InputError(f"--paths: '{glob}' is not a path glob")
        glob_regex(glob)
    if repo is None:
        raise InputError("--repo is required: GOOD and BAD are commits of a local repository holding the engine's "
                         "Python package (bisecting between two images alone is not supported yet)")
    if not repo.is_dir():
        raise InputError(f"--repo: '{repo}' is not a directory")
    if package_dir is not None and (not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_./-]*", package_dir)
                                    or ".." in package_dir.split("/")):
        raise InputError(f"--package-dir: '{package_dir}' is not a relative directory")
    problem = grammar.image_reference(image) if image is not None else None
    if problem:
        raise InputError(f"--image: {problem}")
    if images is not None:
        check_template(images)
    if valid_utf8 and metric != "golden":
        raise InputError(f"--valid-utf8 keeps greedy outputs valid UTF-8: it goes with --metric golden, not {metric}")
    if build_good and (image is not None or images is not None):
        raise InputError("--build-good builds GOOD's image from --repo: give no --image or --images with it")
    session = Session(matrix, None, None, None, None, registry)
    cells = {c.id: c for c in session.expansion.cells}
    if cell not in cells:
        raise InputError(f"--cell: '{cell}' is not a cell of the matrix (see `builder matrix`)")
    problem = model_dir_problem(cells[cell].engine.module, model_dir) if model_dir is not None else None
    if problem:
        raise InputError(f"--model-dir: {problem}")
    if valid_utf8 and cells[cell].engine.module.valid_utf8_fields() is None:
        raise InputError(f"--valid-utf8: the {cells[cell].engine.name} server needs no such constraint "
                         "(it replaces malformed UTF-8 itself)")
    problem = full_build_problem(cells[cell]) if build_good else None
    if problem:
        raise InputError(f"--build-good: {cell} cannot be built at a commit: {problem}")
    if full_build_problem(cells[cell]) is None:  # tier 4 may build from it: its path reaches provenance
        check_origin(str(repo.resolve()))
    git = GitRepo(path=repo)
    every = session.expansion.cells
    # GitError / BisectInputError (exit 2) name an unknown ref
    good_ref = resolve_ref(good, "--good", cells[cell], every, git.resolve)
    bad_ref = resolve_ref(bad, "--bad", cells[cell], every, git.resolve)
    if good_ref.sha == bad_ref.sha:
        raise InputError(f"--good and --bad are the same commit ({good_ref.sha[:12]}): nothing to bisect")
    if not git.is_ancestor(good_ref.sha, bad_ref.sha):  # before any registry or Engine call
        raise InputError(f"--good {good} ({good_ref.sha[:12]}) is not an ancestor of --bad {bad} ({bad_ref.sha[:12]}) "
                         f"in {git.path}: give the older, good revision as --good")
    settings = MeasureSettings(metric=metric, concurrency=concurrency, max_tokens=max_tokens,  # type: ignore[arg-type]
                               pairs=pairs, max_pairs=max(pairs, 10), min_effect=min_effect, prompts=prompts,
                               valid_utf8=valid_utf8)
    image_cell = good_ref.version_cell or cells[cell]
    for ref in (good_ref, bad_ref):
        typer.echo(f"{cell}: {ref.how}", err=True)
    _run(session, cells[cell], image_cell, git, good_ref, bad_ref, image, images, settings, globs, package_dir,
         model_dir, ready_timeout, as_json, no_store, build_good)


def _run(session, cell, image_cell, git, good, bad, image, images, settings, globs, package_dir, model_dir,
         ready_timeout, as_json, no_store, build_good) -> None:
    from builder.errors import StepFailed
    try:
        from builder.bisect.session import BisectRequest, docker_login_client, run_request  # the Docker SDK only here
    except ImportError as exc:
        raise StepFailed(f"builder bisect runs images: it needs the docker Python package ({exc})") from None
    from builder.bisect.refs import version_images
    from builder.oci import dockerd
    from builder.oci.registry import RegistryClient
    from builder.promotion.store import RecordStore

    client = RegistryClient.from_environment(session.names.registry)
    store = RecordStore(client, session.names.repository)
    def known_good(cell_id: str) -> str | None:
        record = store.get_known_good(cell_id)
        return record.image if record else None

    full_build = full_build_settings(session, cell)
    if image is None and images is None and not build_good:
        client.ping()
        image = known_good(image_cell.id)
        if image is None:
            raise StepFailed(f"{image_cell.id} has no known-good record in {client.host}: give --image, "
                             "the good commit's image")
    # tier 1: registry calls only for versions whose release tag the repository has
    known = version_images(cell, session.expansion.cells, git.resolve, known_good)
    job = session.job(cell)
    helper = job.smoke.model_helper
    request = BisectRequest(job=job, repo=git.path, good=good.sha, bad=bad.sha, image=image, settings=settings, paths=globs,
                            package_dir=package_dir, pull_auth=client.docker_auth(), model_dir=model_dir,
                            ready_timeout=ready_timeout, images=images, known_images=known,
                            helper_image=session.names.friendly(helper) if helper else None,
                            full_build=full_build, build_good=build_good,
                            registry_for=lambda host: client if host == client.host else docker_login_client(host))

    def put(key: str, data: dict) -> str:
        if no_store:
            return "not stored (--no-store)"
        tag = store.put_bisect(cell.id, key, data)
        return f"{client.host}/{store.repo}:{tag}"

    def progress(message: str) -> None:
        typer.echo(f"{cell.id}: {message}", err=True)

    def step(record) -> None:
        what = "cached" if record.cached else ("measured" if record.measured else "no measurement")
        progress(f"step {record.step}: candidate {record.index} {record.sha[:12]} {record.verdict} ({what}"
                 f"{', ' + record.reason if record.reason else ''})")

    outcome = run_request(dockerd.connect(), request, log=progress, on_step=step, store=put)
    typer.echo(json.dumps(outcome.data, indent=2) if as_json else outcome.text.rstrip())


def full_build_settings(session, cell):
    """Tier 4's settings for a source cell (None for the others: their full-build steps are skips):
    the BuildKit client, and the cell's base pinned as `builder build` pins it."""
    from builder.bisect.fullbuild import FullBuildSettings
    from builder.bisect.sourcebuild import full_build_problem
    from builder.buildkit.tool import detect_build_tool

    if full_build_problem(cell) is not None:
        return None
    return FullBuildSettings(tool=detect_build_tool(), base=lambda: session.bases.choice(cell.base_image))

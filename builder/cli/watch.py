"""`builder watch`: find upstream releases the matrix lacks, pin and propose each, decide it once and
record the decision in the registry (builder/watch/). Every argument is checked before any network call."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import typer

from builder import grammar
from builder.cli.options import MatrixOpt, RegistryOpt, path_option
from builder.cli.session import Session
from builder.errors import InputError

DEFAULT_INDEX = "https://pypi.org/simple"


def _pairs(values: list[str] | None, option: str, check) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values or []:
        engine, sep, value = item.partition("=")
        if not sep or not engine or not value:
            raise InputError(f"{option}: '{item[:80]}' is not ENGINE=VALUE")
        problem = check(value)
        if problem:
            raise InputError(f"{option} {engine}: {problem}")
        out[engine] = value
    return out


def watch_command(
    cell: list[str] | None = typer.Option(None, "--cell", help="Watch these cells' engines against their known-good (repeat; default: every cell with a known-good record)."),
    index_url: str = typer.Option(DEFAULT_INDEX, "--index-url", envvar="BUILDER_INDEX_URL", help="A PEP 503 simple index (e.g. http://127.0.0.1:8080/simple)."),
    no_pypi: bool = typer.Option(False, "--no-pypi", help="Do not ask the package index."),
    git: list[str] | None = typer.Option(None, "--git", help="ENGINE=URL: release tags of this repository (`git ls-remote --tags`)."),
    images: list[str] | None = typer.Option(None, "--images", help="ENGINE=REGISTRY/REPO: version tags of an upstream image repository."),
    propose_to: Path | None = path_option(None, "--propose-dir", help="Where proposed matrix files go (<matrix>.<engine>-<label>.proposed.yaml; default: beside --matrix, whose relative paths it keeps)."),
    apply: bool = typer.Option(False, "--apply", help="Write the new version entry into --matrix itself (never without this flag)."),
    build: bool = typer.Option(False, "--build", help="Test each release: build its candidate cell from the proposal (a PyPI or git release; an upstream image is used as it is), smoke-test it and gate it against the cell's known-good."),
    ca_bundle: Path | None = path_option(None, "--ca-bundle", help="With --build: CA bundle for pip inside the build (a BuildKit secret), as for `builder build`."),
    find_links: Path | None = path_option(None, "--find-links", help="With --build: the runner's wheel directory for pip --find-links, as for `builder build`."),
    workdir: Path = path_option("build/watch", "--workdir", help="With --build: build contexts, logs (logs/<cell>.log), wheels and smoke reports."),
    promote: bool = typer.Option(False, "--promote", help="With --build: promote a release that passed (never without this flag)."),
    repo: list[str] | None = typer.Option(None, "--repo", help="ENGINE=PATH: a local git repository of the engine; with --build, a regressed or failing release is bisected there and its culprit re-checked."),
    notify: str | None = typer.Option(None, "--notify", help="A command (argv; the JSON on stdin, no shell) or a file (JSON lines): one document per verdict."),
    as_json: bool = typer.Option(False, "--json", help="Print the run's decisions as JSON."),
    matrix: Path = MatrixOpt, registry: str | None = RegistryOpt,
):
    """Find upstream releases newer than the matrix's (PyPI index, git tags, image tags), validate and pin
    each, write a proposed matrix, and record one decision per release and cell in the registry; a
    second run finds the records and does nothing new.

    Example: builder watch --cell vllm-0.32.0-cpu --index-url http://127.0.0.1:8080/simple --notify verdicts.jsonl
    """
    from builder.watch import notify as hooks

    if not no_pypi and (grammar.url(index_url) or not index_url.startswith(("http://", "https://"))):
        raise InputError(f"--index-url: '{index_url[:80]}' is not an http(s) URL of a PEP 503 simple index")
    git_urls = _pairs(git, "--git", grammar.url)
    image_repos = _pairs(images, "--images", grammar.image_reference)
    hook = hooks.parse_hook(notify) if notify is not None else None
    repos = {engine: Path(path) for engine, path in _pairs(repo, "--repo", _directory).items()}
    if (promote or repos or ca_bundle or find_links) and not build:
        raise InputError("--promote, --repo, --ca-bundle and --find-links act on tested releases: add --build")
    session = Session(matrix, None, None, None, None, registry)
    inputs = _build_inputs(session, ca_bundle, find_links, workdir) if build else None
    engines = {c.engine.name for c in session.expansion.cells}
    for engine in [*git_urls, *image_repos, *repos]:
        if engine not in engines:
            raise InputError(f"'{engine[:60]}' is not an engine of {session.matrix.path}")
    for cell_id in cell or []:
        session.cell(cell_id)  # exit 2 on an unknown id
    _run(session, cell, index_url, no_pypi, git_urls, image_repos, propose_to, apply, hook, as_json,
         (promote, repos, inputs) if inputs else None)


def _build_inputs(session, ca_bundle, find_links, workdir):
    """--ca-bundle, --find-links and --workdir checked as `builder build` checks them (matrix pip defaults)."""
    from builder.cli.build import _git_revision
    from builder.cli.options import existing_file, wheel_dir, writable_dir
    from builder.watch.candidate import BuildInputs
    defaults = session.matrix.pip
    ca = existing_file(ca_bundle, "--ca-bundle") if ca_bundle is not None else \
        existing_file(defaults.ca_bundle, defaults.ca_bundle_where)
    links = wheel_dir(find_links, "--find-links") if find_links is not None else \
        wheel_dir(defaults.find_links, defaults.find_links_where)
    writable_dir(workdir, "--workdir")
    return BuildInputs(workdir=workdir.resolve(), secrets={"cabundle": ca.resolve()} if ca else {},
                       find_links=links.resolve() if links else None, revision=_git_revision(session.root))


def _directory(value: str) -> str | None:
    return None if Path(value).is_dir() else f"'{value[:80]}' is not a directory"


def _run(session, cell_ids, index_url, no_pypi, git_urls, image_repos, propose_to, apply, hook, as_json,
         tested) -> None:
    from builder.oci.registry import RegistryClient
    from builder.promotion.store import RecordStore
    from builder.util import utc_now
    from builder.watch import discover
    from builder.watch import notify as hooks
    from builder.watch.evaluate import Proposer
    from builder.watch.loop import Outcome, Target, run_watch
    from builder.watch.releases import Release, machine_of

    client = RegistryClient.from_environment(session.names.registry)
    client.ping()
    store = RecordStore(client, session.names.repository)
    cells = [session.cell(c) for c in cell_ids] if cell_ids else \
        [c for c in session.expansion.cells if store.get_known_good(c.id) is not None]
    if not cells:
        raise InputError("no cell to watch: none has a known-good record; promote one or give --cell")
    targets = [Target(engine=c.engine.name, cell=c.id, known_label=c.engine_version.label,
                      known_versions=tuple(str(v.version) for v in c.engine.versions.values()),
                      known_torch=c.engine_version.torch, platform=c.platform) for c in cells]
    found: dict[str, list] = {}  # per cell: a wheel cell is offered its arch's wheel, a source cell the sdist
    asked: dict[tuple, list] = {}
    for c in cells:
        engine = c.engine
        prefer: discover.Prefer = "wheel" if c.mode == "wheel" else "sdist"
        machine = machine_of(c.platform)
        key = (engine.name, engine.wheel_package(c.arch.name), prefer, machine)
        if key not in asked:
            items: list = []
            if not no_pypi:
                items += discover.pypi_releases(index_url, engine.name, key[1], prefer=prefer, machine=machine)
            if engine.name in git_urls:
                items += discover.git_releases(git_urls[engine.name], engine.name)
            if engine.name in image_repos:
                items += _image_releases(image_repos[engine.name], engine.name)
            asked[key] = items
        found[c.id] = asked[key]
    matrix_file = Path(session.matrix.path)
    proposer = Proposer(matrix=matrix_file, out_dir=propose_to or matrix_file.parent, apply=apply)
    evaluate: Callable[[Target, Release], Outcome] = proposer
    if tested is not None:
        from builder.cli.watch_wiring import make_judge
        from builder.patching.sources import SourceCache
        from builder.watch.candidate import CandidateBuilder
        say = lambda m: typer.echo(m, err=True)  # noqa: E731
        candidates = CandidateBuilder(inputs=tested[2], registry=client, registry_host=session.names.registry,
                                      cache=SourceCache(), say=say)
        evaluate = make_judge(session, client, store, proposer, promote=tested[0], repos=tested[1], say=say,
                              candidates=candidates)
    report = run_watch(targets, found, store, evaluate, (lambda doc: hooks.send(hook, doc)) if hook else (lambda doc: None),
                       utc_now)
    for item in report.rejected:  # recorded and notified by this run; an earlier run's are not repeated
        typer.echo(f"{item.cell}: rejected {item.engine} {item.rejected.kind} release: {item.to_dict()['detail']}",
                   err=True)
    if as_json:
        typer.echo(json.dumps({"decided": [d.to_dict() for d in report.decided], "already": list(report.already),
                               "rejected": [{**r.to_dict(), "record": r.tag} for r in report.rejected]}, indent=2))
        return
    for d in report.decided:
        typer.echo(f"{d.cell}: {d.release.engine} {d.release.label} ({d.release.kind}, {d.release.pin[:19]}): "
                   f"{d.verdict} - {d.detail}{_culprit_words(d.bisect, d.recheck)}")
    if not report.decided and not report.rejected:
        typer.echo(f"nothing new ({len(report.already)} release(s) already decided)")


def _culprit_words(bisect: dict, recheck: dict) -> str:
    """`; culprit <commit> <subject> (confirmed)` for the verdict line, or why there is none."""
    if not bisect:
        return ""
    if "error" in bisect:
        return f"; no culprit: {bisect['error']}"
    first = bisect.get("first_bad") or {}
    named = f"{str(first.get('sha', ''))[:12]} {first.get('subject', '')}".strip() if bisect.get("exact") \
        else "suspects, not one commit"
    status = recheck.get("status", "not run")
    return f"; culprit {named} ({status}{': ' + recheck['why'] if recheck.get('why') else ''})"


def _image_releases(reference: str, engine: str) -> list:
    from builder.bisect.session import docker_login_client
    from builder.oci.reference import parse_reference
    from builder.watch import discover
    ref = parse_reference(reference)
    client = docker_login_client(ref.api_host)
    def digest(tag: str) -> str | None:
        info = client.head_manifest(ref.repository, tag)
        return info.digest if info else None
    return discover.image_releases(client.tags(ref.repository), digest, engine, reference)

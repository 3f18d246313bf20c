"""Tier 4: a source cell's image built from the bisect's repository at a commit (side effects: git,
the docker client through BuildKit, files under the cache directory).

    archive   `git archive --format=tar.gz --prefix=source/ <commit>`, cached by commit under
              <cache>/bisect/sources/ (the template takes the archive's single top directory)
    patches   the cell's patch records judged against the commit's tree (a CONFLICT: StepFailed, a skip);
              no records, no extraction
    render    the cell's own template, base and records (render_cell), the commit's archive in place of
              the pinned source (sourcebuild.commit_cell says what else changes)
    build     `DOCKER_BUILDKIT=1 docker build` (or buildx) of that context: the template's
              `RUN --mount=type=cache` keeps ccache between builds, so a neighbouring commit recompiles
              only what changed; the Docker SDK cannot build with BuildKit, hence the client
    image     tagged `llm-factory-bisect/<cell>:<content hash>` in the local Engine, never pushed; a
              rerun finds it by that tag. Its ccache statistics come from the build log.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import docker

from builder.bases.choice import BaseChoice
from builder.buildkit.plan import BuildTool, build_step, how_args
from builder.errors import StepFailed
from builder.hashing import file_sha256
from builder.jobs.job import CellJob
from builder.matrix.cells import Cell
from builder.names import CELL_LABEL
from builder.oci import dockerd
from builder.patching.check import plan_checked
from builder.patching.records import PatchPlan
from builder.patching.sources import SourceArchive, SourceCache
from builder.render.context import RenderOptions, render_cell, write_context

from .candidates import GitRepo
from .errors import GitError
from .sourcebuild import BISECT_LABEL, COMMIT_LABEL, CcacheStats, check_commit, commit_cell, parse_ccache, step_tag

FULL_BUILD_TIMEOUT_S = 4 * 3600  # a cold llama.cpp cpu build took 35-68 min on 2 shared cores


@dataclass(frozen=True, kw_only=True)
class FullBuildSettings:
    """How a bisect builds at a commit; the CLI resolves them once, after validating every argument."""

    tool: BuildTool
    # the cell's base, pinned as `builder build` pins it (None: FROM as the matrix says); asked at the first
    # full build only, so a bisect that never builds one never resolves it
    base: Callable[[], BaseChoice | None] = lambda: None
    max_jobs: int | None = None  # overrides the template's memory-based cap (outside the content hash)
    timeout_s: float = FULL_BUILD_TIMEOUT_S


@dataclass(frozen=True, kw_only=True)
class FullBuilt:
    sha: str
    digest: str  # the local image id
    tag: str
    seconds: float
    reused: bool  # found by its tag: nothing built
    patches: tuple[str, ...]
    ccache: CcacheStats | None = None
    log: Path | None = None


class FullBuilder:
    """build(sha) -> FullBuilt for one cell and one repository."""

    def __init__(self, client: docker.DockerClient, job: CellJob, repo: GitRepo, settings: FullBuildSettings,
                 workdir: Path, log=lambda message: None):
        self.client, self.job, self.repo, self.settings = client, job, repo, settings
        self.workdir, self.log = workdir, log
        self._base: list[BaseChoice | None] = []  # resolved once, at the first build

    def __call__(self, sha: str) -> FullBuilt:
        sha = check_commit(sha)
        started = time.monotonic()
        cell = commit_cell(self.job.cell, sha, str(self.repo.path.resolve()))
        archive = self.archive(sha)
        archive_sha = file_sha256(archive)
        plan = self.patch_plan(cell, archive, archive_sha)
        if not self._base:
            self._base.append(self.settings.base())
        base = self._base[0]
        options = RenderOptions(source_archive=archive, source_sha256=archive_sha, base=base)
        context = render_cell(cell, plan, options, self.job.template_roots)
        tag = step_tag(cell.id, context.content_hash)
        patches = tuple(p.id for p in plan.apply)
        found = dockerd.inspect_image(self.client, tag)
        if found is not None:
            return FullBuilt(sha=sha, digest=found.id, tag=tag, seconds=time.monotonic() - started, reused=True,
                             patches=patches)
        dockerd.ensure_base(self.client, base.from_text if base else cell.base_image)
        log = self.workdir / "logs" / f"{cell.id}-{sha[:12]}.log"
        self.log(f"full build of {sha[:12]} from {self.repo.path} (log {log})")
        with tempfile.TemporaryDirectory(prefix="llm-factory-bisect-build-") as tmp:
            context_dir = write_context(context, Path(tmp))
            iidfile = Path(tmp) / "image.iid"
            labels = {BISECT_LABEL: "1", CELL_LABEL: cell.id, COMMIT_LABEL: sha}
            step = build_step(self.settings.tool, context, context_dir, tag, {}, labels, iidfile,
                              extra_args=how_args(self.settings.max_jobs))
            run_logged(list(step.argv), step.env, log, self.settings.timeout_s, f"full build of {sha[:12]}")
            digest = iidfile.read_text().strip() if iidfile.is_file() else ""
        if not digest:
            raise StepFailed(f"full build of {sha[:12]}: the build wrote no image id; log {log}")
        stats = parse_ccache(log.read_text(errors="replace"))
        seconds = time.monotonic() - started
        self.log(f"built {tag} from {sha[:12]} in {seconds:.0f}s" + (f", {stats.describe()}" if stats else ""))
        return FullBuilt(sha=sha, digest=digest, tag=tag, seconds=seconds, reused=False, patches=patches,
                         ccache=stats, log=log)

    def archive(self, sha: str) -> Path:
        """The commit's tree as a tar.gz with one top directory, made once per commit."""
        target = self.workdir / "sources" / f"{sha}.tar.gz"
        if target.is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_suffix(".part")
        try:
            self.repo.git("archive", "--format=tar.gz", "--prefix=source/", "-o", str(part), sha)
        except GitError as exc:
            part.unlink(missing_ok=True)
            raise StepFailed(f"cannot archive {sha[:12]}: {exc}") from None
        os.replace(part, target)
        return target

    def patch_plan(self, cell: Cell, archive: Path, archive_sha: str) -> PatchPlan:
        """The cell's patches judged against the commit's tree, as `builder build` judges the pinned source."""
        records = list(self.job.patches)
        if not records:
            return PatchPlan((), (), checked=True)
        cache = SourceCache(self.workdir)
        tree = cache.extract(SourceArchive(cell.engine_version.source, archive, archive_sha, str(self.repo.path)))
        plan, conflicts = plan_checked(records, cell, tree)
        if conflicts:
            first = conflicts[0]
            raise StepFailed(f"patch {first.patch_id} CONFLICT at {cell.engine_version.source.commit[:12]}: "
                             f"{first.detail}")
        return plan


class _Child:
    """One build process in its own process group: killed with its children on every way out
    (Ctrl-C, a timeout, an error while reading its output)."""

    def __init__(self, argv: list[str], env: dict[str, str], timeout_s: float):
        self.argv, self.env, self.timeout_s = argv, env, timeout_s
        self.timed_out = False

    def __enter__(self) -> subprocess.Popen:
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env={**os.environ, **self.env}, text=True, errors="replace",
                                     start_new_session=True)
        self.timer = threading.Timer(self.timeout_s, self._expire)
        self.timer.daemon = True
        self.timer.start()
        return self.proc

    def _expire(self) -> None:
        self.timed_out = True
        self._kill()

    def _kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    def __exit__(self, *exc) -> None:
        self.timer.cancel()
        if self.proc.poll() is None:
            self._kill()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def run_logged(argv: list[str], env: dict[str, str], log: Path, timeout_s: float, what: str) -> None:
    """Run argv (no shell) with its output in `log`; StepFailed with the log's last line when it fails."""
    log.parent.mkdir(parents=True, exist_ok=True)
    child = _Child(argv, env, timeout_s)
    with open(log, "w") as handle, child as proc:
        handle.write("# " + " ".join(argv) + "\n")
        for line in proc.stdout or ():
            handle.write(line)
        code = proc.wait()
    if child.timed_out:
        raise StepFailed(f"{what} took over {timeout_s:.0f}s and was stopped; log {log}")
    if code != 0:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        raise StepFailed(f"{what} failed (exit {code}): {lines[-1][:200] if lines else 'no output'}; log {log}")

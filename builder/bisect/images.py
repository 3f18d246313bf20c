"""Making a step's image (side effects: git, the Docker Engine). Tier 3, the python overlay:

    FROM <the base step's image, by id>
    COPY files/ + apply.py + manifest.json      the candidate's changed files under the package dir
    RUN  apply.py                                copy them into the installed package (located with
                                                 importlib, never imported), delete the deleted ones,
         && apply-overlays.py                    then re-apply the cell's own overlay patches (the
                                                 base image carries them under /opt/llm-factory/overlays):
                                                 a candidate that rewrote a patched file is a CONFLICT, a skip

Step images stay in the local Engine, never pushed: they are tagged
`llm-factory-bisect/<cell>:<input hash>` (no registry host), where the hash covers the base image id,
the candidate commit and its overlay list, so a rerun finds the image instead of building it again.
Nothing a bisect makes can be mistaken for a tested image: no friendly tag, no immutable tag of the
cell's repository. `builder bisect` prints them; `docker image prune --filter label=...` removes them.

Tier 1 (the known-good image of the engine version released at that commit, refs.version_images)
and tier 2 (an upstream image for the commit, upstream.py) are pulled and used as they are; tier 2
only for cells whose good image carries no patches of ours (an upstream image lacks them). Tier 4,
a full build of a source cell at that commit, is fullbuild.py's (injected as `full_build`); for any
other cell it is a skip naming the reason (a wheel cell has no source build).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import docker

from builder.errors import StepFailed
from builder.names import CELL_LABEL
from builder.oci import dockerd

from .candidates import GitRepo
from .ladder import StepPlan
from .model import MadeImage
from .sourcebuild import BISECT_LABEL, COMMIT_LABEL, LOCAL_REPOSITORY

if TYPE_CHECKING:
    from .fullbuild import FullBuilt

__all__ = ["BISECT_LABEL", "COMMIT_LABEL", "LOCAL_REPOSITORY", "BuildTiming", "ImageMaker", "local_tag"]
BUILD_TIMEOUT_S = 600

APPLY = '''\
"""bisect step: put the candidate's files into the installed package, remove the deleted ones."""
import importlib.util, json, shutil, sys
from pathlib import Path

manifest = json.loads(Path(sys.argv[1]).read_text())
here = Path(sys.argv[1]).parent / "files"
top = manifest["package"]
spec = importlib.util.find_spec(top)
if spec is None or not spec.submodule_search_locations:
    sys.exit(f"bisect overlay: package {top!r} is not installed in this image")
root = Path(list(spec.submodule_search_locations)[0]).parent
for change in manifest["changes"]:
    target = root / change["target"]
    if change["status"] == "D":
        target.unlink(missing_ok=True)
        print(f"bisect overlay: removed {target}")
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(here / change["path"], target)
        print(f"bisect overlay: {change['status']} {target}")
'''

DOCKERFILE = '''\
FROM {base}
COPY files/ /opt/llm-factory/bisect/files/
COPY apply.py manifest.json /opt/llm-factory/bisect/
RUN python3 /opt/llm-factory/bisect/apply.py /opt/llm-factory/bisect/manifest.json \\
    && rm -rf /opt/llm-factory/bisect/files \\
    && if [ -f /opt/llm-factory/overlays/manifest.json ]; then \\
         python3 /opt/llm-factory/overlays/apply-overlays.py /opt/llm-factory/overlays/manifest.json; fi
'''


@dataclass(frozen=True, kw_only=True)
class BuildTiming:
    index: int
    sha: str
    tier: str
    seconds: float
    files: int
    reused: bool
    ccache_hits: int | None = None  # full builds: compilations ccache answered, and those it compiled
    ccache_misses: int | None = None
    log: str | None = None  # full builds: the build log

    def describe(self) -> str:
        """One line of the answer's footer: which candidate, how long, what ccache did."""
        what = "found by its tag" if self.reused else f"{self.seconds:.1f}s"
        line = f"{self.tier} candidate {self.index} {self.sha[:12]}: {what}"
        if self.ccache_misses is not None and self.ccache_hits is not None:
            total = self.ccache_hits + self.ccache_misses
            line += f", ccache {self.ccache_hits}/{total} hits" if total else ", ccache: nothing compiled"
        return line


def input_hash(plan: StepPlan, package_dir: str) -> str:
    blob = json.dumps([plan.base_digest, plan.sha, package_dir,
                       [(c.path, c.status) for c in plan.overlay]], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def local_tag(cell_id: str, plan: StepPlan, package_dir: str) -> str:
    return f"{LOCAL_REPOSITORY}/{cell_id.lower()}:{input_hash(plan, package_dir)}"


class ImageMaker:
    """make_image for run_bisect: tiers 1-2 pulled, python overlays built through the Engine, full builds
    by `full_build` (a source cell's FullBuilder); without one a full-build step is a skip with a reason."""

    def __init__(self, client: docker.DockerClient, repo: GitRepo, *, cell_id: str, mode: str,
                 package_dir: str | None, patches: tuple[str, ...] = (), log=lambda message: None,
                 pull_auth: Callable[[str], dict | None] = lambda reference: None,
                 full_build: Callable[[str], FullBuilt] | None = None, no_full_build: str = ""):
        self.client, self.repo, self.pull_auth = client, repo, pull_auth
        self.cell_id, self.mode, self.package_dir = cell_id, mode, (package_dir or "").strip("/")
        self.log = log
        self.patches = patches  # the cell's patch ids the base image carries (re-applied over each overlay)
        self.timings: list[BuildTiming] = []
        self.full_build = full_build
        # why there is no full build (a wheel cell has no source build)
        self.no_full_build = no_full_build or ("a wheel cell has no source build" if mode == "wheel"
                                               else "no full-build settings were given")

    def __call__(self, plan: StepPlan) -> MadeImage:
        if plan.tier == "python-overlay":
            return self.python_overlay(plan)
        if plan.tier in ("registry", "upstream-image") and plan.image:
            return self.pulled_image(plan)
        if plan.tier == "full-build":
            return self.built_at_commit(plan)
        return MadeImage(digest=None, skip_reason=f"tier {plan.tier} is not available for {self.cell_id}")

    def pulled_image(self, plan: StepPlan) -> MadeImage:
        """Tiers 1 and 2: pull the image the registry has for the commit (StepFailed when it cannot
        be pulled: a skip)."""
        assert plan.image is not None
        started = time.monotonic()
        dockerd.ensure_image(self.client, plan.image, self.pull_auth(plan.image))
        digest = self.client.images.get(plan.image).id
        timing = self._timed(plan, started, reused=True)
        self.log(f"{plan.tier} {plan.image} for {plan.sha[:12]} ({digest[:19]}, {timing.seconds:.1f}s)")
        return MadeImage(digest=digest, built=False)

    def built_at_commit(self, plan: StepPlan) -> MadeImage:
        """Tier 4 (StepFailed when the build fails: a skip); without a builder a skip with the reason."""
        if self.full_build is None:
            return MadeImage(digest=None, skip_reason=f"needs a full build ({plan.reason}); "
                                                      f"{self.no_full_build}: skipped")
        built = self.full_build(plan.sha)
        self.timings.append(BuildTiming(index=plan.index, sha=plan.sha, tier=plan.tier, seconds=built.seconds,
                                        files=0, reused=built.reused,
                                        ccache_hits=built.ccache.hits if built.ccache else None,
                                        ccache_misses=built.ccache.misses if built.ccache else None,
                                        log=str(built.log) if built.log else None))
        return MadeImage(digest=built.digest, built=not built.reused, patches=built.patches)

    def python_overlay(self, plan: StepPlan) -> MadeImage:
        assert plan.base_digest is not None
        tag = local_tag(self.cell_id, plan, self.package_dir)
        started = time.monotonic()
        try:
            found = self.client.images.get(tag)
        except docker.errors.ImageNotFound:
            found = None
        if found is not None:
            self._timed(plan, started, reused=True)
            return MadeImage(digest=found.id, built=False, patches=self.patches)
        with tempfile.TemporaryDirectory(prefix="llm-factory-bisect-") as tmp:
            self._context(Path(tmp), plan)
            labels = {BISECT_LABEL: "1", CELL_LABEL: self.cell_id, COMMIT_LABEL: plan.sha}
            try:
                image, _ = self.client.images.build(path=tmp, tag=tag, rm=True, forcerm=True, labels=labels,
                                                    timeout=BUILD_TIMEOUT_S)
            except docker.errors.BuildError as exc:
                lines = [str(chunk.get("stream") or chunk.get("error") or "").strip() for chunk in exc.build_log]
                tail = next((line for line in reversed(lines) if line), str(exc))
                raise StepFailed(f"python overlay of {plan.sha[:12]} failed: {tail}") from None
            except docker.errors.APIError as exc:
                raise StepFailed(f"python overlay of {plan.sha[:12]}: the Engine refused the build: "
                                 f"{exc.explanation or exc}") from None
        timing = self._timed(plan, started, reused=False)
        self.log(f"built {tag} ({len(plan.overlay)} file(s) over {plan.base_digest[:19]}) in {timing.seconds:.1f}s")
        return MadeImage(digest=image.id, built=True, patches=self.patches)

    def _timed(self, plan: StepPlan, started: float, *, reused: bool) -> BuildTiming:
        timing = BuildTiming(index=plan.index, sha=plan.sha, tier=plan.tier, seconds=time.monotonic() - started,
                             files=len(plan.overlay), reused=reused)
        self.timings.append(timing)
        return timing

    def _context(self, root: Path, plan: StepPlan) -> None:
        files = root / "files"
        files.mkdir()
        present = [c.path for c in plan.overlay if c.status != "D"]
        if present:
            with tarfile.open(fileobj=io.BytesIO(self.repo.archive(plan.sha, present))) as tar:
                tar.extractall(files, filter="data")
        parent = self.package_dir.rpartition("/")[0]  # "src/vllm" in the repository is site-packages/vllm
        strip = len(parent) + 1 if parent else 0
        manifest = {"package": self.package_dir.rpartition("/")[2],
                    "changes": [{"path": c.path, "target": c.path[strip:], "status": c.status}
                                for c in plan.overlay]}
        (root / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        (root / "apply.py").write_text(APPLY)
        (root / "Dockerfile").write_text(DOCKERFILE.format(base=plan.base_digest))

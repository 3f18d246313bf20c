"""A PyPI or git release built as its candidate cell (side effects: HTTP, disk, BuildKit, a registry).

The release's file is downloaded once into the source cache and checked against the sha256 its index
link carries (a source build of that sdist then finds it there by its pin, and never asks pypi.org); a
wheel's METADATA says which torch it pins; the proposal's candidate cell is then rendered, built and
pushed as `builder build` does it, a wheel cell with the release's wheel beside the runner's
--find-links wheels (its build checks the wheel's sha256 again, matrix.yaml's `wheel_sha256`).
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from builder.buildkit.progress import Progress
from builder.buildkit.runner import Builder, BuildOptions
from builder.buildkit.tool import detect_build_tool
from builder.errors import StepFailed
from builder.jobs.workspace import Workspace
from builder.oci.registry import RegistryClient
from builder.patching.sources import SourceCache
from builder.render.context import RenderOptions

from .loop import Target
from .releases import Release, wheel_torch

METADATA_MAX = 4 * 1024 * 1024  # a wheel's METADATA; a larger one is not read


@dataclass(frozen=True, kw_only=True)
class BuildInputs:
    """What `builder build` would be given on this runner."""

    workdir: Path  # contexts and logs (logs/<cell>.log)
    secrets: Mapping[str, Path] = field(default_factory=dict)  # BuildKit secrets (the CA bundle): never args
    find_links: Path | None = None  # the runner's wheel directory (--find-links)
    revision: str = ""  # the factory's commit, for the image's revision label


def wheel_metadata(path: Path) -> str:
    """The METADATA of a wheel (its top-level *.dist-info/METADATA); a StepFailed when it has none."""
    try:
        with zipfile.ZipFile(path) as wheel:
            names = [n for n in wheel.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
            if len(names) != 1:
                raise StepFailed(f"{path.name} is not a wheel: {len(names)} *.dist-info/METADATA files")
            info = wheel.getinfo(names[0])
            if info.file_size > METADATA_MAX:
                raise StepFailed(f"{path.name}: METADATA is {info.file_size} bytes (at most {METADATA_MAX})")
            return wheel.read(info).decode("utf-8", "replace")
    except zipfile.BadZipFile:
        raise StepFailed(f"{path.name} is not a wheel (not a zip file)") from None


class CandidateBuilder:
    """pins() and build() of a watch's Judge for PyPI and git releases."""

    def __init__(self, *, inputs: BuildInputs, registry: RegistryClient, registry_host: str,
                 cache: SourceCache, say: Callable[[str], None]):
        self.inputs, self.registry, self.registry_host, self.cache, self.say = \
            inputs, registry, registry_host, cache, say
        self._files: dict[str, Path] = {}  # sha256 -> the checked file in the source cache

    def file_of(self, release: Release) -> Path:
        if release.pin not in self._files:  # once per run: pins() and the build both need it
            self.say(f"{release.engine} {release.label}: fetching {release.filename} ({release.pin[:12]})")
            self._files[release.pin] = self.cache.download(release.url, release.pin, release.filename)
        return self._files[release.pin]

    def pins(self, target: Target, release: Release) -> dict[str, str]:
        """The version entry's fields the release's file decides: a wheel's torch. Downloads the file."""
        if release.kind != "pypi":
            return {}
        if not release.url:
            raise StepFailed(f"{release.engine} {release.label}: the index gave no link to {release.filename}")
        path = self.file_of(release)
        if not release.wheel:
            return {}
        torch = wheel_torch(wheel_metadata(path), target.platform)
        return {"torch": torch} if torch else {}

    def wheels_for(self, release: Release) -> Path:
        """A --find-links directory: the runner's wheels and the release's wheel (links, not copies)."""
        folder = self.inputs.workdir / "wheels" / f"{release.engine}-{release.label}"
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
        sources = sorted(self.inputs.find_links.glob("*.whl")) if self.inputs.find_links else []
        for wheel in [*sources, self.file_of(release)]:
            (folder / wheel.name).symlink_to(wheel.resolve())
        return folder

    def build(self, target: Target, release: Release, proposed: Path) -> tuple[str, str]:
        """(reference, digest) of the proposal's candidate cell, built and pushed (or found up to date)."""
        work = Workspace(proposed, self.registry_host)
        cell = work.cell(target.candidate_cell(release.label))
        job = work.job(cell)
        options = RenderOptions(find_links=self.wheels_for(release) if release.wheel else self.inputs.find_links)
        work.render(job, options)  # templates and patch records checked before anything is built
        builder = Builder(detect_build_tool(), work.names, self.registry,
                          lambda c: work.render(job, options, fetch=True, resolve=True),
                          BuildOptions(self.inputs.workdir, dict(self.inputs.secrets), revision=self.inputs.revision),
                          Progress(1))
        result = builder.build_one(cell)
        if not result.ok:
            raise StepFailed(f"the build of {cell.id} failed: {result.error.splitlines()[0] if result.error else '?'}"
                             f" (log {result.log})")
        self.say(f"{cell.id}: {result.status} {result.image} ({result.digest[:19]}) in {result.seconds:.0f} s")
        return result.image, result.digest

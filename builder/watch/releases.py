"""What upstream offers and what the matrix lacks (pure): releases, their validation, the version entry.

Every string here came from a peer (a package index, a git server, a registry), so each is checked
with the grammar a tag, a path or a Dockerfile would need before it becomes a candidate; a string
that fails is kept only as a rejection with its reason (shown escaped, never used).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

from builder import grammar

Kind = Literal["pypi", "git", "image"]
_SHA256 = re.compile(r"[0-9a-f]{64}")
_COMMIT = re.compile(r"[0-9a-f]{40}")
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # a version label lands in cell ids and image tags


@dataclass(frozen=True, kw_only=True)
class Release:
    """One upstream release, validated: a version label, how it is pinned, where it came from."""

    engine: str
    kind: Kind
    label: str  # the matrix's version label, e.g. 0.33.1 or b11400
    version: str  # PEP 440 (llama.cpp: the build number)
    pin: str  # sha256 of the sdist/wheel, a 40-hex commit, or an image digest
    source: str  # the index URL, git URL or image repository it was found at
    package: str = ""  # the PyPI distribution (pypi) or the upstream image reference (image)
    filename: str = ""  # the file the pin is of (pypi)
    url: str = ""  # where that file is (pypi: the index link, fragment dropped)

    @property
    def wheel(self) -> bool:
        return self.kind == "pypi" and self.filename.endswith(".whl")


@dataclass(frozen=True, kw_only=True)
class Rejected:
    engine: str
    kind: Kind
    value: str  # as upstream wrote it (for the message only)
    reason: str


def check_release(engine: str, kind: Kind, label: str, version: str, pin: str, source: str, *,
                  package: str = "", filename: str = "", url: str = "") -> Release | Rejected:
    """A Release when every upstream string is one a tag, a path and a Dockerfile accept."""
    problem = (_label(label) or grammar.version(version)
               or _pin(kind, pin) or (_filename(filename) if filename else None)
               or (grammar.url(url) if url else None)
               or (grammar.distribution(package) if kind == "pypi" else None)
               or (grammar.image_reference(package) if kind == "image" and package else None))
    if problem:
        return Rejected(engine=engine, kind=kind, value=label, reason=problem)
    return Release(engine=engine, kind=kind, label=label, version=version, pin=pin, source=source,
                   package=package, filename=filename, url=url)


_FILENAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}\.(tar\.gz|whl|zip)")


def _filename(name: str) -> str | None:
    # it becomes a file name on the runner (the download) and a path in a build context
    return None if _FILENAME.fullmatch(name) and ".." not in name else \
        f"{name[:60]!r} is not a package file name (letters, digits, '.', '_', '+', '-'; .tar.gz, .whl or .zip)"


def _label(label: str) -> str | None:
    if not LABEL.fullmatch(label):
        return (f"{label[:60]!r} is not a version label (letters, digits, '.', '_', '-'; at most 64; "
                "it becomes part of a cell id and an image tag)")
    return grammar.tag(label)


def _pin(kind: Kind, pin: str) -> str | None:
    if kind == "git":
        return None if _COMMIT.fullmatch(pin) else f"{pin[:60]!r} is not a 40-hex commit id"
    if kind == "pypi":
        return None if _SHA256.fullmatch(pin) else f"{pin[:60]!r} is not a sha256 (64 hex digits)"
    return None if re.fullmatch(r"sha256:[0-9a-f]{64}", pin) else f"{pin[:80]!r} is not an image digest"


def newer_than(releases: list[Release], known: list[str]) -> list[Release]:
    """The releases the matrix lacks that are newer than its newest version of the engine, oldest first
    (older releases the matrix skipped are the user's choice, not news)."""
    def key(version: str) -> Version | None:
        try:
            return Version(version)
        except InvalidVersion:
            return None
    known_versions = [v for v in (key(k) for k in known) if v is not None]
    newest = max(known_versions) if known_versions else None
    fresh = {r.label: r for r in releases if newest is None or (key(r.version) or newest) > newest}
    return sorted(fresh.values(), key=lambda r: key(r.version) or Version("0"))


def rejections_newer_than(rejected: list[Rejected], known: list[str]) -> list[Rejected]:
    """The rejections worth recording: all but those whose string is a version no newer than the
    matrix's newest (an old release with, say, no sha256 on its link is not news either)."""
    def version(value: str) -> Version | None:
        try:
            return Version(value)
        except InvalidVersion:
            return None
    newest = max((v for v in map(version, known) if v is not None), default=None)
    return [r for r in rejected if newest is None or (v := version(r.value)) is None or v > newest]


def version_entry(release: Release, known: Mapping[str, str] | None = None,
                  build_vars: Mapping[str, str] | None = None) -> dict[str, str | dict[str, str]]:
    """The matrix.yaml entry (engines.<engine>.versions.<label>) of a release, pinned: an sdist by
    `sdist_sha256`, a wheel by `wheel_sha256`, a commit by `git_commit`. `known`: what the release
    cannot say for itself (e.g. torch: the known-good's, or what the wheel's metadata pins); `build_vars`:
    what the engine's build needs to know about a git release's tree (the engine module's)."""
    entry: dict[str, str | dict[str, str]]
    if release.kind == "image":
        return {"version": release.version}  # the image itself is the pin (its digest), given per arch
    if release.kind == "git":
        entry = {"version": release.version, "git_commit": release.pin, "git_url": release.source}
        if build_vars:
            entry["build_vars"] = dict(build_vars)
    else:
        entry = {"wheel_sha256" if release.wheel else "sdist_sha256": release.pin}
        if release.label != release.version:
            entry["version"] = release.version
    return {**entry, **(known or {})}


def machine_of(platform: str) -> str:
    """The machine a wheel's platform tag and its requirement markers name for a cell's platform."""
    return {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}.get(platform, "x86_64")


def wheel_torch(metadata: str, platform: str) -> str | None:
    """The torch release a wheel's METADATA pins (`Requires-Dist: torch==2.13.0+cpu; <markers>`) on a
    Linux platform (linux/amd64, linux/arm64), without its local label; None when it pins none exactly."""
    env = {"platform_machine": machine_of(platform), "platform_system": "Linux", "sys_platform": "linux", "extra": ""}
    for line in metadata.splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        try:
            req = Requirement(line.split(":", 1)[1].strip())
        except InvalidRequirement:
            continue
        if req.name.lower() != "torch" or (req.marker is not None and not req.marker.evaluate(env)):
            continue
        pins = [s.version for s in req.specifier if s.operator in ("==", "===") and "*" not in s.version]
        if len(pins) == 1 and not grammar.version(base := pins[0].split("+", 1)[0]):
            return base
    return None

"""Fetching engine sources for `source` builds and patch checks (side effects: HTTP, git, disk).

Three kinds: a PyPI sdist (URL and sha256 from PyPI's JSON API), a git commit, a local path.
Every archive is verified against its sha256 and cached on disk by checksum; a mismatch is an
error, never a warning. Extracted trees are cached beside the archives.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import requests

from builder.errors import InputError, ServiceError, StepFailed
from builder.hashing import file_sha256
from builder.matrix.model import SourceRef
from builder.util import cache_dir, redact

PYPI_URL = os.environ.get("BUILDER_PYPI_URL", "https://pypi.org")
_TIMEOUT = (10, 120)


def default_cache_dir() -> Path:
    return cache_dir()


@dataclass(frozen=True)
class SourceArchive:
    ref: SourceRef
    path: Path  # a .tar.gz whose single top directory holds the source tree
    sha256: str
    origin: str  # the URL, git remote or directory it came from


class SourceCache:
    def __init__(self, root: Path | None = None, session: requests.Session | None = None):
        self.root = Path(root or default_cache_dir())
        self.http = session or requests.Session()
        # Checked here, before anything is fetched: a bad setting is exit 2, not a late OSError
        # or "PyPI unreachable".
        for candidate in (self.root, *self.root.absolute().parents):
            if candidate.exists():
                if not candidate.is_dir():
                    raise InputError(f"BUILDER_CACHE: the cache directory '{self.root}' is not a directory"
                                     + ("" if candidate == self.root else f" ('{candidate}' is a file)"))
                break
        where = urllib.parse.urlsplit(PYPI_URL) if not re.search(r"\s", PYPI_URL) else None
        if where is None or where.scheme not in ("http", "https") or not where.netloc:
            raise InputError(f"BUILDER_PYPI_URL: {PYPI_URL[:80]!r} is not an http(s) URL (e.g. https://pypi.org)")

    # -- PyPI ------------------------------------------------------------------------------
    def pypi_sdist(self, name: str, version: str) -> tuple[str, str, str]:
        """(url, sha256, filename) of the sdist of name==version, from PyPI's JSON API."""
        api = f"{PYPI_URL}/pypi/{name}/json"
        try:
            reply = self.http.get(api, timeout=_TIMEOUT)
        except requests.RequestException as exc:
            raise ServiceError(f"PyPI unreachable ({api}): {exc.__class__.__name__}") from None
        if reply.status_code == 404:
            raise InputError(f"PyPI has no project '{name}'")
        if reply.status_code != 200:
            raise ServiceError(f"PyPI answered {reply.status_code} for {api}")
        try:
            releases = reply.json().get("releases", {})
        except ValueError:
            raise ServiceError(f"{redact(api)} did not answer JSON (a proxy page?)") from None
        if version not in releases:
            raise InputError(f"PyPI has no {name} release '{version}'")
        for entry in releases[version]:
            if entry.get("packagetype") == "sdist":
                return urllib.parse.urljoin(api, entry["url"]), entry["digests"]["sha256"], entry["filename"]
        raise InputError(f"{name} {version} has no sdist on PyPI (only wheels): use a git_commit or a path source")

    def fetch(self, ref: SourceRef) -> SourceArchive:
        try:
            if ref.kind == "pypi":
                return self._fetch_pypi(ref)
            if ref.kind == "git":
                return self._fetch_git(ref)
            return self._pack_path(ref)
        except OSError as exc:
            raise InputError(f"cache {self.root} (BUILDER_CACHE): cannot write {exc.filename or ''}: "
                             f"{exc.strerror or exc}") from None

    def _fetch_pypi(self, ref: SourceRef) -> SourceArchive:
        if ref.sha256:
            cached = self._cached(ref.sha256)
            if cached:
                return SourceArchive(ref, cached, ref.sha256, "cache")
        url, sha256, filename = self.pypi_sdist(ref.name, ref.version)
        if ref.sha256 and ref.sha256 != sha256:
            raise StepFailed(f"checksum mismatch for {ref.name}=={ref.version}: matrix.yaml pins sha256 "
                             f"{ref.sha256}, PyPI lists {sha256}; check which one is right before building")
        cached = self._cached(sha256)
        if cached:
            return SourceArchive(ref, cached, sha256, url)
        return SourceArchive(ref, self._download(url, sha256, filename), sha256, url)

    def _cached(self, sha256: str) -> Path | None:
        folder = self.root / "archives" / sha256
        for path in folder.glob("*.tar.gz") if folder.is_dir() else []:
            if file_sha256(path) == sha256:
                return path
            path.unlink()  # a corrupted cache entry is removed, never used
        return None

    def download(self, url: str, sha256: str, filename: str) -> Path:
        """A file named by its sha256 (a release's sdist or wheel from a package index), downloaded once
        into the cache and checked; a source build of that sdist then finds it here by its pin."""
        kept = self.root / "archives" / sha256 / filename
        if kept.is_file() and file_sha256(kept) == sha256:
            return kept
        try:
            return self._download(url, sha256, filename)
        except OSError as exc:
            raise InputError(f"cache {self.root} (BUILDER_CACHE): cannot write {exc.filename or ''}: "
                             f"{exc.strerror or exc}") from None

    def _download(self, url: str, sha256: str, filename: str) -> Path:
        folder = self.root / "archives" / sha256
        folder.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with tempfile.NamedTemporaryFile(dir=folder, delete=False, suffix=".part") as part:
            try:
                with self.http.get(url, stream=True, timeout=_TIMEOUT) as reply:
                    if reply.status_code != 200:
                        os.unlink(part.name)
                        raise ServiceError(f"download of {redact(url)} answered {reply.status_code}")
                    for chunk in reply.iter_content(1 << 20):
                        digest.update(chunk)
                        part.write(chunk)
            except requests.RequestException as exc:
                os.unlink(part.name)
                raise ServiceError(f"download of {url} failed: {exc.__class__.__name__}") from None
        if digest.hexdigest() != sha256:
            os.unlink(part.name)
            raise StepFailed(f"checksum mismatch for {url}: expected sha256 {sha256}, got {digest.hexdigest()}")
        target = folder / filename
        os.replace(part.name, target)
        return target

    # -- git and local paths ---------------------------------------------------------------
    def _fetch_git(self, ref: SourceRef) -> SourceArchive:
        folder = self.root / "git" / ref.commit
        archive = folder / f"source-{ref.commit[:12]}.tar.gz"
        if not archive.exists():
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=folder) as tmp:
                def git(*args: str) -> None:
                    try:
                        done = subprocess.run(["git", *args], cwd=tmp, capture_output=True, text=True, timeout=1800)
                    except FileNotFoundError:
                        raise InputError("git is not installed (apt-get install git)") from None
                    except subprocess.TimeoutExpired:
                        raise StepFailed(f"git {args[0]} of {redact(ref.url)} took over 30 minutes") from None
                    if done.returncode != 0:
                        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
                        raise StepFailed(f"git {args[0]} of {redact(ref.url)}@{ref.commit} failed: {last}")
                git("init", "-q")
                git("fetch", "-q", "--depth", "1", ref.url, ref.commit)
                part = Path(tmp) / archive.name  # renamed into place only when complete
                git("archive", "--format=tar.gz", f"--prefix=source-{ref.commit[:12]}/", "-o", str(part), "FETCH_HEAD")
                os.replace(part, archive)
        return SourceArchive(ref, archive, file_sha256(archive), redact(ref.url))

    def _pack_path(self, ref: SourceRef) -> SourceArchive:
        source = Path(ref.path).expanduser()
        if not source.is_dir():
            where = f"{ref.where}: " if ref.where else ""
            raise InputError(f"{where}source path '{ref.path}' is not a directory")
        folder = self.root / "paths"
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, delete=False, suffix=".tar.gz") as part:
            _deterministic_tar(source, Path(part.name))
        sha256 = file_sha256(Path(part.name))
        target = folder / f"{sha256}.tar.gz"
        os.replace(part.name, target)
        return SourceArchive(ref, target, sha256, str(source))

    def extract(self, archive: SourceArchive) -> Path:
        """The source tree of an archive (extracted once, cached by checksum)."""
        tree = self.root / "trees" / archive.sha256
        if (tree / ".complete").exists():
            return _single_top(tree)
        try:
            if tree.exists():
                shutil.rmtree(tree)
            tree.mkdir(parents=True)
            with tarfile.open(archive.path) as tar:
                tar.extractall(tree, filter="data")
            (tree / ".complete").write_text(archive.sha256)
        except OSError as exc:
            raise InputError(f"cache {self.root} (BUILDER_CACHE): cannot write {exc.filename or ''}: "
                             f"{exc.strerror or exc}") from None
        return _single_top(tree)


def _single_top(tree: Path) -> Path:
    tops = [p for p in tree.iterdir() if p.is_dir()]
    return tops[0] if len(tops) == 1 else tree


def _deterministic_tar(source: Path, target: Path) -> None:
    """Same directory content, same bytes: sorted entries, zeroed times and owners."""
    import gzip

    def clean(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if "/.git/" in f"/{info.name}/" or info.name.endswith("/.git"):
            return None
        info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
        return info

    # filename="": gzip would otherwise record the (temporary) file name in its header
    with open(target, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w") as tar:
        for path in sorted(source.rglob("*")):
            tar.add(path, arcname=f"source/{path.relative_to(source)}", recursive=False, filter=clean)

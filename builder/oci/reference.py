"""Image references as Docker normalises them (pure).

`nvidia/cuda:13.0.2-devel-ubuntu24.04` is docker.io, repository nvidia/cuda, tag
13.0.2-devel-ubuntu24.04. The first path component names a registry when it holds a '.' or ':'
or is 'localhost' (distribution/reference's rule); Docker Hub's one-component names get
'library/'; docker.io's API answers at registry-1.docker.io.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from builder.errors import InputError
from builder.names import DIGEST_PATTERN

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_TAG = re.compile(r"^\w[\w.-]{0,127}$")
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")


@dataclass(frozen=True)
class ImageRef:
    registry: str  # docker.io, 127.0.0.1:5000, nvcr.io
    repository: str  # library/debian, nvidia/cuda
    tag: str | None = None
    digest: str | None = None

    @property
    def api_host(self) -> str:
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def name(self) -> str:
        """How Docker spells the repository in RepoDigests (Docker Hub names short)."""
        if self.registry != DOCKER_HUB:
            return f"{self.registry}/{self.repository}"
        return self.repository.removeprefix("library/")

    @property
    def ref(self) -> str:
        """What to ask the registry for: the digest when there is one (Docker's rule), else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        return self.name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


def parse_reference(text: str) -> ImageRef:
    if not text or text != text.strip() or " " in text:
        raise InputError(f"bad image reference {text!r}")
    rest, _, digest = text.partition("@")
    if digest and not DIGEST_PATTERN.fullmatch(digest):
        raise InputError(f"bad digest in image reference {text!r} (expected sha256:<64 hex digits>)")
    first, _, remainder = rest.partition("/")
    if remainder and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, remainder
    else:
        registry, path = DOCKER_HUB, rest
    tag = None
    if path.rfind(":") > path.rfind("/"):
        path, _, tag = path.rpartition(":")
        if not _TAG.match(tag):
            raise InputError(f"bad tag {tag!r} in image reference {text!r}")
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if not all(_COMPONENT.match(part) for part in path.split("/")):
        raise InputError(f"bad repository {path!r} in image reference {text!r} (lower case, digits, . _ -)")
    return ImageRef(registry, path, tag if tag or digest else "latest", digest or None)

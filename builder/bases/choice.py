"""Which base a cell builds on and how its FROM lines name it (pure).

    registry base, locked or looked up   FROM <reference>@<digest>            hash: that text
    the same, built from the mirror      FROM <mirror>/<host>/<repo>:<tag>@<digest>   hash: unchanged
    local-only base (docker import)      FROM <reference>                     hash: + the image id

Why a registry digest always goes into the FROM line: the Engine's BuildKit (20.10, measured)
builds `FROM repo:tag` on a local copy when there is one, even after the registry's tag has
moved, so a hashed digest that the FROM line does not name could differ from the base built
on. A local-only image cannot be named by id in a FROM line (`name@sha256:<id>` and
`sha256:<id>` both make BuildKit ask Docker Hub), so its FROM line keeps the tag and the build
checks the id before and the built image's layers after (buildkit/runner.py).
Where the bytes come from (upstream or the mirror) is not what they are: the content hash sees
the canonical FROM line, so switching to the mirror rebuilds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from builder.errors import InputError
from builder.oci.reference import parse_reference


@dataclass(frozen=True)
class BaseChoice:
    reference: str  # as the matrix spells it
    digest: str  # registry digest (an index for multi-platform bases), or the local image id
    local: bool = False
    from_text: str = ""  # what the FROM lines say
    canonical_from: str = ""  # what the FROM lines say in the hashed Dockerfile
    origin: str = "registry"  # lock | matrix | registry | engine: where the digest came from

    @property
    def identity(self) -> str:
        """The base's line in the content hash."""
        return f"{self.reference} local {self.digest}" if self.local else self.canonical_from

    @property
    def from_mirror(self) -> bool:
        return self.from_text != self.canonical_from


def mirror_repository(mirror: str, reference: str) -> str:
    """`<mirror>/<source host>/<repository>`; a port's ':' is not allowed in a path component."""
    ref = parse_reference(reference)
    return f"{mirror.rstrip('/')}/{ref.registry.lower().replace(':', '-')}/{ref.repository}"


def choose(reference: str, digest: str, *, local: bool = False, mirror: str | None = None,
           origin: str = "registry") -> BaseChoice:
    if local:
        return BaseChoice(reference, digest, True, reference, reference, "engine")
    ref = parse_reference(reference)
    if ref.digest and ref.digest != digest:
        raise InputError(f"base image {reference} names {ref.digest}, but {origin} says {digest}")
    canonical = reference if ref.digest else f"{reference}@{digest}"  # the matrix's spelling, pinned
    from_text = canonical
    if mirror:
        name = mirror_repository(mirror, reference)
        from_text = f"{name}:{ref.tag}@{digest}" if ref.tag else f"{name}@{digest}"
    return BaseChoice(reference, digest, False, from_text, canonical, origin)

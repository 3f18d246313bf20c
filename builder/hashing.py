"""Content hashing of a build context: same inputs, same hash, byte for byte.

The hash covers every file of the context (by path and content), the build arguments, the base
image reference and the platform. Timestamps, file modes and the host never enter it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def bytes_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_hash(files: Mapping[str, bytes | Path], build_args: Mapping[str, str], base_image: str,
                 platform: str) -> str:
    """The full sha256 hex digest of everything that determines the image."""
    digest = hashlib.sha256(b"llm-factory build context v1\n")
    for name in sorted(files):
        body = files[name]
        file_digest = bytes_sha256(body) if isinstance(body, bytes) else file_sha256(body)
        digest.update(f"file {name} {file_digest}\n".encode())
    for key in sorted(build_args):
        digest.update(f"arg {key}={build_args[key]}\n".encode())
    digest.update(f"base {base_image}\nplatform {platform}\n".encode())
    return digest.hexdigest()


"""Reading the factory's provenance.json out of a pushed image, through the registry. Side effects.

The rendered Dockerfile COPYs provenance.json in one of its last layers, so the layers are read
newest first and only small ones (a whiteout or a later layer may hide it: the newest copy wins).
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from typing import Any

from builder.errors import StepFailed
from builder.oci.registry import INDEX_TYPES, RegistryClient

_LAYER_CAP = 64 * 1024 * 1024  # a layer this large is the engine, not the provenance file
_FILE_CAP = 1024 * 1024


def image_manifest(client: RegistryClient, repository: str, digest: str) -> dict[str, Any]:
    """The image manifest of digest (an index's linux/amd64 entry, else its first)."""
    body, media_type, _ = client.get_manifest(repository, digest)
    manifest = json.loads(body)
    if manifest.get("mediaType", media_type) in INDEX_TYPES or "manifests" in manifest:
        entries = manifest.get("manifests") or []
        pick = next((m for m in entries if (m.get("platform") or {}).get("architecture") == "amd64"),
                    entries[0] if entries else None)
        if pick is None:
            raise StepFailed(f"{repository}@{digest} is an empty image index")
        manifest = json.loads(client.get_manifest(repository, pick["digest"])[0])
    return manifest if isinstance(manifest, dict) else {}


def read_provenance(client: RegistryClient, repository: str, digest: str, path: str) -> dict[str, Any] | None:
    """The JSON file at `path` in the image, or None when no small layer holds it."""
    name = path.lstrip("/")
    for layer in reversed(image_manifest(client, repository, digest).get("layers") or []):
        if int(layer.get("size") or 0) > _LAYER_CAP:
            continue
        data = client.get_blob(repository, layer["digest"])
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        try:
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                for member in tar:
                    if member.name.lstrip("./") == name and member.isfile() and member.size <= _FILE_CAP:
                        handle = tar.extractfile(member)
                        found = json.loads(handle.read()) if handle else None
                        return found if isinstance(found, dict) else None
        except (tarfile.TarError, ValueError):
            continue
    return None

"""OCI 1.1 artifacts attached to an image by `subject`, found through the referrers API or its tag fallback.

An artifact is an OCI image manifest with the empty config, one layer (the payload) and `subject`
naming the image's manifest; it is pushed by digest, untagged. A registry that serves the referrers
API (`GET /v2/<name>/referrers/<digest>`) says so by answering the manifest PUT with an `OCI-Subject`
header; for one that does not (Distribution 2.8: its PUT has no such header and the API is a 404),
the client keeps the OCI referrers tag schema: the tag `sha256-<hex>` holds an image index whose
entries are the artifacts (read, add, write, re-read: two writers at once both end up listed).
This is the layout `oras attach` / `oras discover` write and read.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from builder.errors import StepFailed
from builder.oci.registry import OCI_INDEX, OCI_MANIFEST, ManifestInfo, RegistryClient, sha256_digest
from builder.oci.transport import RegistryNotFound

EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG = b"{}"
TITLE = "org.opencontainers.image.title"
_TAG_ROUNDS = 5  # read-add-write rounds of the fallback tag before giving up on a racing writer
_MAX_REFERRERS = 1000  # a referrers index this long is a fault, not a history


@dataclass(frozen=True, kw_only=True)
class Referrer:
    """One artifact attached to a subject, as a referrers index lists it."""

    digest: str
    artifact_type: str
    size: int
    annotations: dict[str, str]


def _canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def referrers_tag(digest: str) -> str:
    """The fallback tag of a subject: `sha256-<64 hex>` (the OCI distribution spec's tag schema)."""
    algorithm, _, hexpart = digest.partition(":")
    return f"{algorithm}-{hexpart}"


def artifact_manifest(artifact_type: str, payload: bytes, subject: ManifestInfo, annotations: dict[str, str],
                      title: str) -> bytes:
    """The manifest bytes of one artifact (pure): empty config, the payload as its only layer."""
    manifest = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
        "config": {"mediaType": EMPTY_TYPE, "digest": sha256_digest(EMPTY_CONFIG), "size": len(EMPTY_CONFIG)},
        "layers": [{"mediaType": artifact_type, "digest": sha256_digest(payload), "size": len(payload),
                    "annotations": {TITLE: title}}],
        "subject": {"mediaType": subject.media_type, "digest": subject.digest, "size": subject.size},
        "annotations": annotations,
    }
    return _canonical(manifest)


def index_with(index: dict[str, Any] | None, entry: dict[str, Any]) -> dict[str, Any]:
    """A referrers index with entry added (pure; an entry of the same digest is replaced)."""
    kept = [m for m in (index or {}).get("manifests") or [] if isinstance(m, dict) and m.get("digest") != entry["digest"]]
    return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": kept + [entry]}


def attach(client: RegistryClient, repo: str, subject: ManifestInfo, artifact_type: str, payload: bytes,
           annotations: dict[str, str], title: str) -> str:
    """Push payload as an artifact of subject; returns the artifact manifest's digest."""
    client.push_blob(repo, EMPTY_CONFIG)
    client.push_blob(repo, payload)
    body = artifact_manifest(artifact_type, payload, subject, annotations, title)
    digest = sha256_digest(body)
    reply = client.request("PUT", f"/v2/{repo}/manifests/{digest}", repo=repo, push=True,
                           what=f"artifact manifest {repo}@{digest}", data=body,
                           headers={"Content-Type": OCI_MANIFEST})
    if reply.headers.get("OCI-Subject") == subject.digest:
        return digest  # the registry indexes referrers itself
    entry = {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(body), "artifactType": artifact_type,
             "annotations": annotations}
    _add_to_tag(client, repo, subject.digest, entry)
    return digest


def _add_to_tag(client: RegistryClient, repo: str, subject: str, entry: dict[str, Any]) -> None:
    tag = referrers_tag(subject)
    for round_ in range(_TAG_ROUNDS):
        current = _tag_index(client, repo, tag)
        if any(m.get("digest") == entry["digest"] for m in current.get("manifests") or []):
            return
        client.put_manifest(repo, tag, _canonical(index_with(current, entry)), OCI_INDEX)
        time.sleep(0.05 * round_)
        if any(m.get("digest") == entry["digest"] for m in _tag_index(client, repo, tag).get("manifests") or []):
            return
    raise StepFailed(f"{client.host}/{repo}:{tag}: another writer kept replacing the referrers index; attach again")


def _tag_index(client: RegistryClient, repo: str, tag: str) -> dict[str, Any]:
    try:
        body, _, _ = client.get_manifest(repo, tag)
    except RegistryNotFound:
        return {}
    try:
        index = json.loads(body)
    except ValueError:
        index = None
    if not isinstance(index, dict) or not isinstance(index.get("manifests", []), list):
        raise StepFailed(f"{client.host}/{repo}:{tag} is not an OCI referrers index")
    return index


def list_referrers(client: RegistryClient, repo: str, subject: str, artifact_type: str | None = None) -> list[Referrer]:
    """The artifacts attached to subject: the referrers API when the registry serves it, else the tag."""
    reply = client.request("GET", f"/v2/{repo}/referrers/{subject}", repo=repo, what=f"referrers of {repo}@{subject}",
                           missing_ok=True, headers={"Accept": OCI_INDEX})
    index: dict[str, Any]
    if reply.status_code == 200 and reply.headers.get("Content-Type", "").startswith(OCI_INDEX):
        try:
            index = json.loads(reply.content)
        except ValueError:
            raise StepFailed(f"{client.host}: the referrers of {repo}@{subject} are not JSON") from None
    else:
        index = _tag_index(client, repo, referrers_tag(subject))
    entries = index.get("manifests") or [] if isinstance(index, dict) else []
    if len(entries) > _MAX_REFERRERS:
        raise StepFailed(f"{client.host}/{repo}@{subject} has over {_MAX_REFERRERS} referrers")
    found = []
    for item in entries:
        if not isinstance(item, dict) or not isinstance(item.get("digest"), str):
            continue
        kind = str(item.get("artifactType") or "")
        if artifact_type is None or kind == artifact_type:
            annotations = item["annotations"] if isinstance(item.get("annotations"), dict) else {}
            found.append(Referrer(digest=item["digest"], artifact_type=kind, size=int(item.get("size") or 0),
                                  annotations={str(k): str(v) for k, v in annotations.items()}))
    return found


def artifact_payload(client: RegistryClient, repo: str, digest: str) -> tuple[dict[str, Any], bytes]:
    """(manifest, its one layer's bytes) of an artifact, each checked against its digest."""
    body, _, _ = client.get_manifest(repo, digest)
    try:
        manifest = json.loads(body)
    except ValueError:
        manifest = None
    layers = manifest.get("layers") if isinstance(manifest, dict) else None
    if not isinstance(layers, list) or len(layers) != 1 or not isinstance(layers[0], dict):
        raise StepFailed(f"{client.host}/{repo}@{digest} is not a one-layer artifact manifest")
    return manifest, client.get_blob(repo, str(layers[0].get("digest")))

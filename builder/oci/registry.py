"""A registry HTTP API v2 client (Distribution, Gitea, GHCR, Harbor...): manifests, blobs, tags.

Side effects only; requests go through oci/transport.py (trust, scheme, auth, retries, deadlines,
errors). Facts measured on Distribution 2.8.2 that shape it: every manifest request sends Accept
with all four manifest types (else the registry converts to schema1, with another digest); a
manifest's bytes PUT under another tag keep their digest (promotion moves no layer).
Secrets (password, tokens) never appear in an exception, a log line or a repr.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import requests

from builder.errors import ServiceError, StepFailed
from builder.oci.credentials import credentials_for
from builder.oci.transport import MAX_BLOB, UPLOAD_TIMEOUT, RegistryNotFound, RegistryTransport

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
ACCEPT = ", ".join([OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_V2])
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
# Body caps (decoded bytes) of what the registry sends back; a blob's is the transport's MAX_BLOB.
MAX_MANIFEST = 4 << 20  # Distribution's own limit on a manifest
MAX_PAGE = 16 << 20  # one page of a tag list or the catalog
MAX_TAGS = 100_000  # tags (or repositories) of one listing
_MAX_PAGES = 1000  # tag list pages followed at most


@dataclass(frozen=True)
class ManifestInfo:
    digest: str
    media_type: str
    size: int


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class RegistryClient(RegistryTransport):
    """The API v2 operations on one registry host (RegistryTransport: how each request is sent)."""

    @classmethod
    def from_environment(cls, host: str, ca_bundle: Path | None = None) -> "RegistryClient":
        """Credentials from BUILDER_REGISTRY_USER + BUILDER_REGISTRY_PASSWORD(_FILE), else from the
        Docker client config (what `docker login HOST` wrote), else none."""
        user, password = credentials_for(host) or (None, None)
        return cls(host, user, password, ca_bundle)

    def ping(self) -> None:
        """GET /v2/: reachable, speaks the registry API, accepts our credentials."""
        try:
            self._request("GET", "/v2/", what="the API root /v2/")
        except RegistryNotFound:
            raise ServiceError(f"{self.host} is not a registry: GET /v2/ answered 404") from None

    def head_manifest(self, repo: str, ref: str) -> ManifestInfo | None:
        reply = self._request("HEAD", f"/v2/{repo}/manifests/{ref}", repo=repo, what=f"{repo}:{ref}",
                              headers={"Accept": ACCEPT}, missing_ok=True)
        if reply.status_code == 404:
            return None
        digest = reply.headers.get("Docker-Content-Digest")
        if not digest:  # not every registry sends it on HEAD: the GET body tells
            body, media_type, digest = self.get_manifest(repo, ref)
            return ManifestInfo(digest, media_type, len(body))
        length = reply.headers.get("Content-Length") or "0"
        return ManifestInfo(digest, reply.headers.get("Content-Type", ""), int(length) if length.isdigit() else 0)

    def get_manifest(self, repo: str, ref: str) -> tuple[bytes, str, str]:
        reply = self._request("GET", f"/v2/{repo}/manifests/{ref}", repo=repo, what=f"manifest {repo}:{ref}",
                              headers={"Accept": ACCEPT}, limit=MAX_MANIFEST)
        body = reply.content
        digest = sha256_digest(body)
        if ref.startswith("sha256:") and digest != ref:
            raise StepFailed(f"registry {self.host} returned a manifest for {repo}@{ref} whose sha256 is {digest}")
        return body, reply.headers.get("Content-Type", ""), digest

    def put_manifest(self, repo: str, ref: str, body: bytes, media_type: str) -> str:
        reply = self._request("PUT", f"/v2/{repo}/manifests/{ref}", repo=repo, push=True,
                              what=f"manifest {repo}:{ref}", data=body, headers={"Content-Type": media_type})
        digest = sha256_digest(body)
        stored = reply.headers.get("Docker-Content-Digest", digest)
        if stored != digest:
            raise StepFailed(f"registry {self.host} stored {repo}:{ref} as {stored}, expected {digest}")
        return digest

    def tags(self, repo: str, page_size: int = 100) -> list[str]:
        """Every tag of repo ([] for a repository nobody pushed to)."""
        return self._paged(f"/v2/{repo}/tags/list?n={page_size}", "tags", repo, f"tags of {repo}")

    def catalog(self, page_size: int = 100) -> list[str]:
        """Every repository (registries may restrict /v2/_catalog to admins)."""
        return self._paged(f"/v2/_catalog?n={page_size}", "repositories", None, "the catalog")

    def _paged(self, path: str | None, key: str, repo: str | None, what: str) -> list[str]:
        # Link: <...>; rel="next" pagination (Distribution 2.8 pages the catalog, not tags; 3.x,
        # GHCR and Harbor page both)
        found: list[str] = []
        for _ in range(_MAX_PAGES):
            if path is None:
                return list(dict.fromkeys(found))
            reply = self._request("GET", path, repo=repo, what=what, missing_ok=True, limit=MAX_PAGE)
            if reply.status_code == 404:
                return found
            found += _names(reply, key, f"registry {self.host}: {what}")
            if len(found) > MAX_TAGS:
                raise StepFailed(f"registry {self.host}: more than {MAX_TAGS} entries in {what}")
            nxt = reply.links.get("next", {}).get("url")
            path = (nxt if nxt.startswith("/") else urljoin(self._url(path), nxt)) if nxt else None
        raise StepFailed(f"registry {self.host}: more than {_MAX_PAGES} pages of {what}")

    def blob_exists(self, repo: str, digest: str) -> bool:
        reply = self._request("HEAD", f"/v2/{repo}/blobs/{digest}", repo=repo, what=f"blob {digest}",
                              missing_ok=True)
        return reply.status_code == 200

    def push_blob(self, repo: str, data: bytes) -> str:
        digest = sha256_digest(data)
        if self.blob_exists(repo, digest):
            return digest
        # monolithic upload: POST opens a session, PUT ?digest= closes it with the bytes
        reply = self._request("POST", f"/v2/{repo}/blobs/uploads/", repo=repo, push=True, what="a blob upload")
        location = reply.headers.get("Location")
        if not location:
            raise StepFailed(f"registry {self.host} opened an upload for {repo} without a Location")
        self._request("PUT", urljoin(self._url(f"/v2/{repo}/blobs/uploads/"), location), repo=repo, push=True,
                      what=f"blob {digest}", params={"digest": digest}, data=data,
                      headers={"Content-Type": "application/octet-stream"}, timeout=UPLOAD_TIMEOUT)
        return digest

    def get_blob(self, repo: str, digest: str) -> bytes:
        reply = self._request("GET", f"/v2/{repo}/blobs/{digest}", repo=repo, what=f"blob {repo}@{digest}",
                              timeout=UPLOAD_TIMEOUT, limit=MAX_BLOB)
        if sha256_digest(reply.content) != digest:
            raise StepFailed(f"registry {self.host} returned blob {repo}@{digest} with another sha256")
        return reply.content

    def image_labels(self, repo: str, ref: str) -> dict[str, str]:
        body, media_type, _ = self.get_manifest(repo, ref)
        manifest = _json_object(body, f"registry {self.host}: manifest {repo}:{ref}")
        if manifest.get("mediaType", media_type) in INDEX_TYPES or "manifests" in manifest:
            entries = [m for m in manifest.get("manifests") or [] if isinstance(m, dict)]
            if not entries:
                raise StepFailed(f"{repo}:{ref} is an empty image index")
            pick = next((m for m in entries if _dict(m.get("platform")).get("os") == "linux"
                         and _dict(m.get("platform")).get("architecture") == "amd64"), entries[0])
            digest = pick.get("digest")
            if not isinstance(digest, str) or not digest.startswith("sha256:"):
                raise StepFailed(f"registry {self.host}: index {repo}:{ref} names no usable digest")
            manifest = _json_object(self.get_manifest(repo, digest)[0], f"registry {self.host}: manifest {repo}@{digest}")
        config = _dict(manifest.get("config")).get("digest")
        if not isinstance(config, str) or not config.startswith("sha256:"):
            return {}
        data = _json_object(self.get_blob(repo, config) or b"{}", f"registry {self.host}: config of {repo}:{ref}")
        labels = _dict(data.get("config")).get("Labels") or {}
        return {str(k): str(v) for k, v in _dict(labels).items()}


def _dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _json_object(body: bytes, what: str) -> dict:
    """A registry document that must be a JSON object: StepFailed naming it otherwise."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise StepFailed(f"{what} is not JSON") from None
    if not isinstance(data, dict):
        raise StepFailed(f"{what} is not a JSON object")
    return data


def _names(reply: requests.Response, key: str, what: str) -> list[str]:
    """The `key` list of a tag list or catalog page: strings only, else StepFailed naming it."""
    try:
        data = reply.json()
    except (ValueError, RecursionError):
        raise StepFailed(f"{what}: the answer is not JSON") from None
    names = data.get(key) if isinstance(data, dict) else None
    if names is None:
        return []
    if not isinstance(names, list) or not all(isinstance(n, str) and n.isprintable() and len(n) <= 256
                                              for n in names):
        raise StepFailed(f"{what}: '{key}' is not a list of names")
    return names



"""A registry HTTP API v2 client (Distribution, Gitea, GHCR, Harbor...) over requests.

Side effects only. Facts measured on Distribution 2.8.2 that shape it: every manifest request sends
Accept with all four manifest types (else the registry converts to schema1, with another digest);
Session.trust_env is off (requests would let REQUESTS_CA_BUNDLE override Session.verify); a
manifest's bytes PUT under another tag keep their digest (promotion moves no layer).
Secrets (password, tokens) never appear in an exception, a log line or a repr.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import requests

from builder.errors import InputError, ServiceError, StepFailed
from builder.net import client as net
from builder.oci.auth import RegistryAuth, is_loopback, reason
from builder.safetext import shown
from builder.oci.credentials import credentials_for

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
ACCEPT = ", ".join([OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_V2])
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
DOCKER_CERTS_DIR = Path("/etc/docker/certs.d")  # where Docker itself looks for a registry's CA
SYSTEM_CA = Path("/etc/ssl/certs/ca-certificates.crt")
_TIMEOUT = (10, 60)  # (connect, read) seconds
_UPLOAD_TIMEOUT = (10, 600)
# Whole-request deadlines and body caps (decoded bytes) of what the registry sends back: a stalled or
# flooding registry costs at most this much time and memory.
DEADLINE_S = 120.0
UPLOAD_DEADLINE_S = 900.0
MAX_MANIFEST = 4 << 20  # Distribution's own limit on a manifest
MAX_PAGE = 16 << 20  # one page of a tag list or the catalog
MAX_BLOB = 64 << 20  # a config, record or report blob read whole
MAX_TAGS = 100_000  # tags (or repositories) of one listing
_MAX_PAGES = 1000  # tag list pages followed at most
_READ_RETRIES = 4


class RegistryNotFound(StepFailed):
    """A manifest, blob or repository the caller expected is not in the registry."""


@dataclass(frozen=True)
class ManifestInfo:
    digest: str
    media_type: str
    size: int


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class RegistryClient:
    def __init__(self, host: str, username: str | None = None, password: str | None = None,
                 ca_bundle: Path | None = None):
        self.host = host
        self.username = username
        self.auth = RegistryAuth(host, username, password)
        self._scheme: str | None = None  # decided by the first request that reaches the host
        self.session = net.session()  # no proxy/CA variables; deadlines reach its sockets
        trust = self._ca(ca_bundle)
        self.session.verify = str(trust) if isinstance(trust, Path) else trust
        certs = DOCKER_CERTS_DIR / host
        if (certs / "client.cert").is_file() and (certs / "client.key").is_file():
            self.session.cert = (str(certs / "client.cert"), str(certs / "client.key"))

    def _ca(self, ca_bundle: Path | None) -> Path | bool:
        # ca argument, BUILDER_REGISTRY_CA, Docker's per-registry CA, then the system bundle
        env = os.environ.get("BUILDER_REGISTRY_CA")
        for candidate, where in ((ca_bundle, "registry CA bundle"), (Path(env) if env else None, "BUILDER_REGISTRY_CA")):
            if candidate is not None:
                if not Path(candidate).is_file():
                    raise InputError(f"{where}: '{candidate}' is not a readable file")
                return Path(candidate)
        docker_ca = DOCKER_CERTS_DIR / self.host / "ca.crt"
        if docker_ca.is_file():
            return docker_ca
        system = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if system and Path(system).is_file():
            return Path(system)
        return SYSTEM_CA if SYSTEM_CA.is_file() else True

    def __repr__(self) -> str:
        return f"RegistryClient(host={self.host!r}, username={self.username!r}, scheme={self._scheme!r})"

    @classmethod
    def from_environment(cls, host: str, ca_bundle: Path | None = None) -> "RegistryClient":
        """Credentials from BUILDER_REGISTRY_USER + BUILDER_REGISTRY_PASSWORD(_FILE), else from the
        Docker client config (what `docker login HOST` wrote), else none."""
        user, password = credentials_for(host) or (None, None)
        return cls(host, user, password, ca_bundle)

    # -- public API --------------------------------------------------------------------------
    def docker_auth(self) -> dict | None:
        """auth_config for the Docker Engine API push (the Engine needs the password itself)."""
        return self.auth.docker_auth()

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
                      headers={"Content-Type": "application/octet-stream"}, timeout=_UPLOAD_TIMEOUT)
        return digest

    def get_blob(self, repo: str, digest: str) -> bytes:
        reply = self._request("GET", f"/v2/{repo}/blobs/{digest}", repo=repo, what=f"blob {repo}@{digest}",
                              timeout=_UPLOAD_TIMEOUT, limit=MAX_BLOB)
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

    # -- transport, scheme and auth ------------------------------------------------------------
    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        """The authenticated transport (retries, scheme, one-line errors), for oci/copy.py's
        streamed blob transfers; `path` may be a Location the registry returned."""
        return self._request(method, path if path.startswith(("http://", "https://", "/")) else
                             urljoin(self._url("/v2/"), path), **kwargs)

    def _url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else f"{self._scheme or 'https'}://{self.host}{path}"

    def _request(self, method: str, path: str, *, what: str, repo: str | None = None, push: bool = False,
                 headers: dict | None = None, missing_ok: bool = False, timeout=_TIMEOUT,
                 limit: int = MAX_BLOB, **kwargs) -> requests.Response:
        scope = f"repository:{repo}:{'pull,push' if push else 'pull'}" if repo else ""
        for attempt in range(2):  # the second try carries what the 401 asked for
            auth = self.auth.header(scope)
            reply = self._send(method, path, headers={**(headers or {}), **auth}, timeout=timeout, limit=limit,
                               **kwargs)
            if reply.status_code != 401 or attempt or not self.auth.answer(self.session, reply, scope, sent=bool(auth)):
                break
        return self._check(reply, method, what, push, missing_ok)

    def _do(self, method: str, url: str, *, timeout=_TIMEOUT, limit: int = MAX_BLOB,
            stream: bool = False, **kwargs) -> requests.Response:
        """One request through the network layer: the whole-request deadline and the body cap apply,
        except for a streamed blob transfer (oci/copy.py reads that body itself, piece by piece)."""
        if stream:
            return self.session.request(method, url, stream=True, timeout=timeout, **kwargs)
        connect, read = timeout
        limits = net.Limits(connect_s=connect, read_s=read, max_body=limit,
                            total_s=UPLOAD_DEADLINE_S if read > _TIMEOUT[1] else DEADLINE_S)
        return net.send(self.session, method, url, limits=limits, **kwargs)

    def _send(self, method: str, path: str, **kwargs) -> requests.Response:
        if self._scheme is None and not path.startswith(("http://", "https://")):
            try:
                reply = self._do(method, f"https://{self.host}{path}", **kwargs)
                self._scheme = "https"
                return reply
            except requests.exceptions.SSLError as exc:
                if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                    raise ServiceError(f"registry {self.host}: its TLS certificate is not trusted: set "
                                       f"BUILDER_REGISTRY_CA or put its CA in {DOCKER_CERTS_DIR}/{self.host}/ca.crt"
                                       ) from None
                if not is_loopback(self.host):
                    raise ServiceError(f"registry {self.host} unreachable: {reason(exc)} (https)") from None
            except requests.RequestException as exc:
                if not is_loopback(self.host) or not isinstance(exc, requests.ConnectionError):
                    raise ServiceError(f"registry {self.host} unreachable: {reason(exc)} (https)") from None
            try:  # Docker treats loopback registries as insecure: plain HTTP is allowed there
                reply = self._do(method, f"http://{self.host}{path}", **kwargs)
            except requests.RequestException as exc:
                raise ServiceError(f"registry {self.host} unreachable: {reason(exc)} "
                                   "(tried https, then http)") from None
            self._scheme = "http"
            return reply
        # Reads are retried on a 5xx: Distribution answers 500 to a GET of a tag that another
        # client is rewriting at that moment (seen in the promotion race tests).
        attempts = _READ_RETRIES if method in ("GET", "HEAD") else 1
        for attempt in range(attempts):
            try:
                reply = self._do(method, self._url(path), **kwargs)
            except requests.RequestException as exc:
                raise ServiceError(f"registry {self.host} unreachable: {reason(exc)} ({self._scheme})") from None
            if reply.status_code < 500 or attempt == attempts - 1:
                return reply
            time.sleep(0.2 * (attempt + 1))
        return reply


    def _check(self, reply: requests.Response, method: str, what: str, push: bool,
               missing_ok: bool) -> requests.Response:
        code = reply.status_code
        if code < 300 or (code == 404 and missing_ok):
            return reply
        if code == 401:
            raise ServiceError(self.auth.refused())
        if code == 403:
            right = "push" if push else "pull"
            raise ServiceError(f"registry {self.host} denied {method} {what} (403): the account "
                               f"{self.username or '(anonymous)'} needs {right} rights there")
        if code == 404:
            raise RegistryNotFound(f"{what} not found in registry {self.host}")
        detail = _errors(reply)
        if code >= 500 or code == 429:
            raise ServiceError(f"registry {self.host} failed on {method} {what} (HTTP {code}{detail})")
        raise StepFailed(f"registry {self.host} rejected {method} {what} (HTTP {code}{detail})")


def _errors(reply: requests.Response) -> str:
    """The registry's own error codes (Distribution's JSON errors), short."""
    try:
        errors = reply.json().get("errors") or []
        text = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors if isinstance(e, dict))
    except (ValueError, AttributeError, TypeError):
        return ""
    return f": {shown(text[:200])}" if text else ""


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



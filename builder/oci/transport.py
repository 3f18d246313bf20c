"""How a registry request is sent: TLS trust, scheme, a 401's retry, read retries, deadlines, errors.

Side effects only. RegistryTransport sends one request to a registry's API v2 and maps what comes
back to a typed error (builder/errors.py) or a reply; oci/registry.py's RegistryClient builds the
API's operations on it, and oci/copy.py streams blobs through `request`. Facts measured on
Distribution 2.8.2 that shape it: Session.trust_env is off (requests would let REQUESTS_CA_BUNDLE
override Session.verify); Distribution answers 500 to a GET of a tag another client is rewriting.
Secrets (password, tokens) never appear in an exception, a log line or a repr.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import urljoin

import requests

from builder.errors import InputError, ServiceError, StepFailed
from builder.net import client as net
from builder.oci.auth import RegistryAuth, is_loopback, reason
from builder.safetext import shown

DOCKER_CERTS_DIR = Path("/etc/docker/certs.d")  # where Docker itself looks for a registry's CA
SYSTEM_CA = Path("/etc/ssl/certs/ca-certificates.crt")
TIMEOUT = (10, 60)  # (connect, read) seconds
UPLOAD_TIMEOUT = (10, 600)
# Whole-request deadlines and the default body cap (decoded bytes) of what the registry sends back: a
# stalled or flooding registry costs at most this much time and memory.
DEADLINE_S = 120.0
UPLOAD_DEADLINE_S = 900.0
MAX_BLOB = 64 << 20  # a config, record or report blob read whole
_READ_RETRIES = 4


class RegistryNotFound(StepFailed):
    """A manifest, blob or repository the caller expected is not in the registry."""


class RegistryTransport:
    """One registry host: its trust, client certificate, credentials and the scheme it answered on."""

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
        return f"{type(self).__name__}(host={self.host!r}, username={self.username!r}, scheme={self._scheme!r})"

    def docker_auth(self) -> dict | None:
        """auth_config for the Docker Engine API push (the Engine needs the password itself)."""
        return self.auth.docker_auth()

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        """The authenticated transport (retries, scheme, one-line errors), for oci/copy.py's
        streamed blob transfers; `path` may be a Location the registry returned."""
        return self._request(method, path if path.startswith(("http://", "https://", "/")) else
                             urljoin(self._url("/v2/"), path), **kwargs)

    def _url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else f"{self._scheme or 'https'}://{self.host}{path}"

    def _request(self, method: str, path: str, *, what: str, repo: str | None = None, push: bool = False,
                 headers: dict | None = None, missing_ok: bool = False, timeout=TIMEOUT,
                 limit: int = MAX_BLOB, **kwargs) -> requests.Response:
        scope = f"repository:{repo}:{'pull,push' if push else 'pull'}" if repo else ""
        for attempt in range(2):  # the second try carries what the 401 asked for
            auth = self.auth.header(scope)
            reply = self._send(method, path, headers={**(headers or {}), **auth}, timeout=timeout, limit=limit,
                               **kwargs)
            if reply.status_code != 401 or attempt or not self.auth.answer(self.session, reply, scope, sent=bool(auth)):
                break
        return self._check(reply, method, what, push, missing_ok)

    def _do(self, method: str, url: str, *, timeout=TIMEOUT, limit: int = MAX_BLOB,
            stream: bool = False, **kwargs) -> requests.Response:
        """One request through the network layer: the whole-request deadline and the body cap apply,
        except for a streamed blob transfer (oci/copy.py reads that body itself, piece by piece)."""
        if stream:
            return self.session.request(method, url, stream=True, timeout=timeout, **kwargs)
        connect, read = timeout
        limits = net.Limits(connect_s=connect, read_s=read, max_body=limit,
                            total_s=UPLOAD_DEADLINE_S if read > TIMEOUT[1] else DEADLINE_S)
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

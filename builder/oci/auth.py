"""Registry authentication: WWW-Authenticate challenges, Basic credentials and Bearer tokens.

Learnt from the first 401 of a host and kept per scope. Secrets (password, tokens) are held in
`Secret`, whose repr and str never show them: they reach no exception, log line or repr.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

from builder.errors import ServiceError
from builder.net import client as net
from builder.safetext import shown

TOKEN_LIMITS = net.Limits(connect_s=10, read_s=60, total_s=120, max_body=1 << 20)  # a token answer is small
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9._~+/=-]{1,16384}")  # what a Bearer header may carry (RFC 6750 b64token)


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower case: "basic" | "bearer" | ...
    params: dict[str, str]


class Secret:
    """Holds a password or token; its repr and str never show it."""

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


_AUTH_ITEM = re.compile(r'\s*,?\s*([A-Za-z0-9!#$%&\'*+.^_`|~-]+)(?:\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*))?')


def parse_challenges(header: str) -> list[Challenge]:
    """Parse WWW-Authenticate (`Bearer realm="...",service="...",scope="a:b:pull,push"`)."""
    challenges: list[Challenge] = []
    pos = 0
    while pos < len(header):  # every match advances pos, so this ends
        match = _AUTH_ITEM.match(header, pos)
        if not match or match.end() == pos:
            break
        pos = match.end()
        name, value = match.group(1), match.group(2)
        if value is None:
            challenges.append(Challenge(name.lower(), {}))
        elif challenges:
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            challenges[-1].params[name.lower()] = value
    return challenges


def basic(user: str, password: str) -> str:
    """A Basic authorisation value, UTF-8 encoded (RFC 7617's charset; requests' latin-1 raises on
    a password outside it)."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode("utf-8", "surrogatepass")).decode()


def is_loopback(host: str) -> bool:
    try:
        name = urlsplit(f"//{host}").hostname or ""
    except ValueError:  # an unclosed IPv6 bracket
        return False
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class RegistryAuth:
    """What one registry host asks for ("basic" | "bearer", from its first 401) and the tokens it gave."""

    def __init__(self, host: str, username: str | None, password: str | None):
        self.host = host
        self.username = username
        self._password = Secret(password) if password is not None else None
        self.kind: str | None = None
        self._tokens: dict[str, tuple[Secret, float]] = {}  # scope -> (token, monotonic expiry)

    @property
    def has_password(self) -> bool:
        return self._password is not None

    def docker_auth(self) -> dict | None:
        """auth_config for the Docker Engine API push (the Engine needs the password itself)."""
        if self.username is None or self._password is None:
            return None
        return {"username": self.username, "password": self._password.reveal(), "serveraddress": self.host}

    def header(self, scope: str) -> dict[str, str]:
        if self.kind == "basic" and self._password is not None:
            return {"Authorization": basic(self.username or "", self._password.reveal())}
        if self.kind == "bearer":
            token = self._tokens.get(scope)
            if token and token[1] > time.monotonic():
                return {"Authorization": f"Bearer {token[0].reveal()}"}
        return {}

    def answer(self, session: requests.Session, reply: requests.Response, scope: str, sent: bool) -> bool:
        """Learn what a 401 asks for; True when a retry can succeed."""
        challenges = {c.scheme: c for c in parse_challenges(reply.headers.get("WWW-Authenticate", ""))}
        if "bearer" in challenges:
            self.kind = "bearer"
            self._fetch_token(session, challenges["bearer"], scope)
            return True
        if "basic" in challenges and self._password is not None and not (sent and self.kind == "basic"):
            self.kind = "basic"
            return True
        return False

    def _fetch_token(self, session: requests.Session, challenge: Challenge, scope: str) -> None:
        realm = challenge.params.get("realm", "")
        try:
            where = urlsplit(realm)
            where.port  # noqa: B018 (a bad port raises here)
        except ValueError:
            where = urlsplit("")
        if where.scheme not in ("http", "https") or not where.hostname:
            raise ServiceError(f"registry {self.host} asked for a Bearer token without a usable realm")
        params = {k: v for k, v in (("service", challenge.params.get("service")),
                                    ("scope", challenge.params.get("scope") or scope)) if v}
        headers = {}
        if self._password is not None:
            if where.scheme != "https" and not is_loopback(where.netloc):
                raise ServiceError(f"registry {self.host}: token service {where.netloc} is not https; "
                                   "refusing to send credentials to it")
            headers["Authorization"] = basic(self.username or "", self._password.reveal())
        try:
            reply = net.send(session, "GET", realm, params=params, headers=headers, limits=TOKEN_LIMITS)
        except requests.RequestException as exc:
            raise ServiceError(f"token service {shown(where.netloc)} of registry {self.host} unreachable: "
                               f"{reason(exc)}") from None
        if reply.status_code in (401, 403):
            raise ServiceError(self.refused())
        try:
            data = reply.json() if reply.status_code == 200 else {}
        except (ValueError, RecursionError):
            data = {}
        token = (data.get("token") or data.get("access_token")) if isinstance(data, dict) else None
        if not isinstance(token, str) or not _TOKEN_CHARS.fullmatch(token):
            raise ServiceError(f"token service {shown(where.netloc)} of registry {self.host} gave no usable token "
                               f"(HTTP {reply.status_code})")
        expires = data.get("expires_in")
        ttl = float(expires) if isinstance(expires, (int, float)) and 0 < expires < 1e9 else 60.0  # spec default
        self._tokens[scope] = (Secret(token), time.monotonic() + max(ttl - 10, 5))

    def refused(self) -> str:
        how = f"set BUILDER_REGISTRY_USER/BUILDER_REGISTRY_PASSWORD or docker login {self.host}"
        if self._password is None:
            return f"registry {self.host} requires credentials (401): {how}"
        return f"registry {self.host} refused the credentials (401): {how}"


def reason(exc: Exception) -> str:
    """The short cause of a failed request (the network layer's wording, credentials redacted)."""
    return net.reason(exc)

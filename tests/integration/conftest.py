"""Real registries for the integration tests: Debian's `docker-registry` (Distribution 2.8) started
as plain processes on free loopback ports, in temporary directories, killed at teardown.

  plain_registry   http, no auth, access log on (tests count requests in it)
  tls_registry     https (self-signed cert, IP SAN 127.0.0.1) + htpasswd (bcrypt)
  token_registry   http + Bearer tokens from a tiny token server in a thread (needs `cryptography`)

No Docker: test images are pushed through the HTTP API (`push_image`), which is all a registry sees.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import re
import shutil
import socket
import subprocess
import tarfile
import threading
import time
import uuid
import warnings
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from builder.oci import dockerd
from builder.oci.registry import DOCKER_V2, OCI_MANIFEST, RegistryClient
from tests.conftest import run_builder
from tests.integration.cpu_cell import BASE, CELL, REPOSITORY, WHEELS

USER = "factory"
PASSWORD = "Zq7-registry-pw-4f1c"  # distinctive: tests look for it in messages and reprs
_READY_SECONDS = 20
_HTTP = requests.Session()
_HTTP.trust_env = False  # else REQUESTS_CA_BUNDLE in the environment overrides verify=


def registry_binary() -> str | None:
    return shutil.which("docker-registry") or next(
        (p for p in ("/usr/bin/docker-registry", "/usr/sbin/docker-registry") if Path(p).is_file()), None)


@dataclass
class RegistryServer:
    host: str  # 127.0.0.1:PORT
    root: Path
    log: Path
    process: subprocess.Popen
    scheme: str
    ca: Path | None = None
    user: str | None = None
    password: str | None = None
    extra: dict = field(default_factory=dict)

    def client(self, **kwargs) -> RegistryClient:
        return RegistryClient(self.host, **kwargs)

    def access_log(self) -> list[str]:
        """Access-log request lines, after a sentinel request shows the log has caught up."""
        sentinel = f"/v2/sentinel-{uuid.uuid4().hex}/tags/list"
        _HTTP.get(f"{self.scheme}://{self.host}{sentinel}", verify=str(self.ca) if self.ca else True,
                     timeout=5)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            lines = self.log.read_text(errors="replace").splitlines()
            if any(sentinel in line for line in lines):
                return [m.group(1) for m in (re.search(r'"([A-Z]+ \S+) HTTP/[0-9.]+"', l) for l in lines) if m]
            time.sleep(0.05)
        raise AssertionError(f"the access log {self.log} never showed {sentinel}")


def _die_with_parent() -> None:
    """Runs in the child before exec: the registry gets SIGTERM if pytest itself is killed."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, 15)  # PR_SET_PDEATHSIG, SIGTERM
    except OSError:
        pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _config(root: Path, port: int, extra: str) -> str:
    return (f"version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: false\n"
            f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{port}\n  secret: test-secret-{port}\n{extra}")


def start_registry(binary: str, root: Path, scheme: str = "http", http_extra: str = "", auth: str = "",
                   ca: Path | None = None) -> RegistryServer:
    root.mkdir(parents=True, exist_ok=True)
    last = ""
    for _ in range(3):  # a free port can be taken between the probe and the bind: try another
        port = _free_port()
        config = root / "config.yml"
        config.write_text(_config(root, port, http_extra) + auth)
        log = root / "registry.log"
        with open(log, "ab") as out:
            process = subprocess.Popen([binary, "serve", str(config)], stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        server = RegistryServer(f"127.0.0.1:{port}", root, log, process, scheme, ca)
        deadline = time.monotonic() + _READY_SECONDS
        while time.monotonic() < deadline and process.poll() is None:
            try:
                code = _HTTP.get(f"{scheme}://{server.host}/v2/", verify=str(ca) if ca else True,
                                    timeout=2).status_code
                if code in (200, 401):
                    return server
            except requests.RequestException:
                pass
            time.sleep(0.1)
        stop_registry(server)
        last = log.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"docker-registry did not start; log tail:\n{last}")


def stop_registry(server: RegistryServer) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=5)


def bcrypt_hash(password: str) -> str:
    """Distribution's htpasswd accepts bcrypt only; cost 4 keeps each authenticated request fast."""
    try:
        import bcrypt
        return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    except ImportError:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # Python <= 3.12
        return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 4))


def self_signed(directory: Path, name: str, san: str | None) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    argv = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", str(key),
            "-out", str(cert), "-subj", f"/CN={name}"]
    subprocess.run(argv + (["-addext", f"subjectAltName={san}"] if san else []), check=True,
                   capture_output=True, timeout=60)
    return cert, key


@pytest.fixture(scope="session")
def registry_bin() -> str:
    binary = registry_binary()
    if binary is None:
        pytest.skip("Debian's docker-registry is not installed (scripts/test.sh installs it: "
                    "apt-get install docker-registry)")
    return binary


@pytest.fixture(scope="session")
def plain_registry(registry_bin, tmp_path_factory):
    server = start_registry(registry_bin, tmp_path_factory.mktemp("registry-plain"))
    yield server
    stop_registry(server)


@pytest.fixture(scope="session")
def tls_registry(registry_bin, tmp_path_factory):
    root = tmp_path_factory.mktemp("registry-tls")
    cert, key = self_signed(root / "certs", "registry", "IP:127.0.0.1,DNS:localhost")
    (root / "htpasswd").write_text(f"{USER}:{bcrypt_hash(PASSWORD)}\n")
    server = start_registry(registry_bin, root, "https",
                            f"  tls:\n    certificate: {cert}\n    key: {key}\n",
                            f"auth:\n  htpasswd:\n    realm: test-registry\n    path: {root / 'htpasswd'}\n", ca=cert)
    server.user, server.password = USER, PASSWORD
    yield server
    stop_registry(server)


# -- Bearer: a token server in a thread, and a registry that trusts its signing cert ------------------
def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, cert: Path, key: Path):
        from cryptography.hazmat.primitives import serialization
        from cryptography.x509 import load_pem_x509_certificate
        super().__init__(("127.0.0.1", 0), _TokenHandler)
        self.key = serialization.load_pem_private_key(key.read_bytes(), password=None)
        der = load_pem_x509_certificate(cert.read_bytes()).public_bytes(serialization.Encoding.DER)
        self.x5c = base64.b64encode(der).decode()
        self.requests: list[dict] = []  # what each token request asked for

    def token(self, subject: str, scopes: list[str]) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        claims = {"iss": "test-issuer", "sub": subject, "aud": "test-registry", "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": uuid.uuid4().hex, "access": access}
        signing = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = self.key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing}.{_b64url(signature)}"


class _TokenHandler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        query = parse_qs(urlsplit(self.path).query)
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        self.server.requests.append({"scope": query.get("scope", []), "auth": bool(self.headers.get("Authorization"))})
        if self.headers.get("Authorization") != expected:
            self._reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]})
            return
        token = self.server.token(USER, query.get("scope", []))
        self._reply(200, {"token": token, "access_token": token, "expires_in": 300})

    def _reply(self, code: int, body: dict):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture(scope="session")
def token_registry(registry_bin, tmp_path_factory):
    pytest.importorskip("cryptography", reason="the Bearer test signs tokens with `cryptography`")
    root = tmp_path_factory.mktemp("registry-token")
    cert, key = self_signed(root / "certs", "token-issuer", None)
    tokens = TokenServer(cert, key)
    thread = threading.Thread(target=tokens.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    realm = f"http://127.0.0.1:{tokens.server_address[1]}/token"
    server = start_registry(registry_bin, root, auth=(
        f"auth:\n  token:\n    realm: {realm}\n    service: test-registry\n    issuer: test-issuer\n"
        f"    rootcertbundle: {cert}\n"))
    server.user, server.password = USER, PASSWORD
    server.extra["tokens"] = tokens
    yield server
    stop_registry(server)
    tokens.shutdown()
    tokens.server_close()


# -- synthetic images --------------------------------------------------------------------------------
def _layer(content: bytes) -> tuple[bytes, str]:
    """A gzip'd tar with one file; returns (blob, diff_id)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mtime = len(content), 0
        tar.addfile(info, io.BytesIO(content))
    data = raw.getvalue()
    return gzip.compress(data, mtime=0), "sha256:" + hashlib.sha256(data).hexdigest()


def push_image(client: RegistryClient, repo: str, tag: str, labels: dict[str, str] | None = None,
               arch: str = "amd64", oci: bool = False, content: bytes | None = None) -> str:
    """Push a one-layer image (labels in its config) under repo:tag; returns the manifest digest."""
    blob, diff_id = _layer(content if content is not None else f"{repo}:{tag}:{arch}\n".encode())
    config = json.dumps({"architecture": arch, "os": "linux", "created": "2026-01-01T00:00:00Z",
                         "config": {"Labels": labels or {}},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}, sort_keys=True).encode()
    kinds = (("application/vnd.oci.image.config.v1+json", "application/vnd.oci.image.layer.v1.tar+gzip",
              OCI_MANIFEST) if oci else
             ("application/vnd.docker.container.image.v1+json",
              "application/vnd.docker.image.rootfs.diff.tar.gzip", DOCKER_V2))
    manifest = {"schemaVersion": 2, "mediaType": kinds[2],
                "config": {"mediaType": kinds[0], "digest": client.push_blob(repo, config), "size": len(config)},
                "layers": [{"mediaType": kinds[1], "digest": client.push_blob(repo, blob), "size": len(blob)}]}
    body = json.dumps(manifest, indent=3).encode()
    return client.put_manifest(repo, tag, body, kinds[2])


@pytest.fixture
def image_pusher() -> Callable[..., str]:
    return push_image


# -- the cpu vLLM image, built once per session for the build, smoke and promotion tests --------------


@pytest.fixture(scope="session")
def docker_client():
    return dockerd.connect()  # fails with a clear message when no Engine runs (scripts/test.sh starts one)


@pytest.fixture(scope="session")
def cpu_base(docker_client):
    if dockerd.image_id(docker_client, BASE) is None:
        run_builder("base", "create", "--tag", BASE, check=True)
    return BASE


@pytest.fixture(scope="session")
def planted(tmp_path_factory) -> tuple[Path, str]:
    """A CA bundle that works (the system one) with a planted secret value in a PEM comment."""
    value = f"PLANTED-SECRET-{uuid.uuid4().hex}"
    bundle = tmp_path_factory.mktemp("secret") / "ca.pem"
    bundle.write_text(Path("/etc/ssl/certs/ca-certificates.crt").read_text() + f"\n# {value}\n")
    return bundle, value


@pytest.fixture(scope="session")
def cpu_build(plain_registry, cpu_base, planted, tmp_path_factory):
    """`builder build` of the cpu cell into a fresh registry (BuildKit's cache makes reruns quick)."""
    workdir = tmp_path_factory.mktemp("build")
    done = run_builder("build", "--cell", CELL, "--registry", plain_registry.host, "--ca-bundle", str(planted[0]),
                       "--find-links", str(WHEELS), "--workdir", str(workdir))
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    record = json.loads((workdir / "logs" / f"{CELL}.json").read_text())
    # The registry is shared by the session: later tests promote, so what the build itself pushed is
    # read here, before any of them runs.
    tags = RegistryClient(plain_registry.host).tags(REPOSITORY)
    return {"workdir": workdir, "record": record, "stdout": done.stdout, "stderr": done.stderr,
            "registry": plain_registry, "tags_after_build": tags}



def build_and_push(docker_client, dockerfile: str, ref: str) -> str:
    """Build a context of one Dockerfile with the Engine and push it as `ref` (images the tests make
    on the fly, such as broken variants of the cpu image); returns ref."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile.encode())
        tar.addfile(info, io.BytesIO(dockerfile.encode()))
    buffer.seek(0)
    docker_client.images.build(fileobj=buffer, custom_context=True, tag=ref, rm=True)
    dockerd.push(docker_client, ref, None)
    return ref


def smoke(registry, image: str, *extra: str):
    # A smoke run boots the candidate and, for the gate, the known-good beside it: on a loaded 2-core
    # runner each boot has taken 4-5 minutes.
    return run_builder("smoke", image, "--registry", registry.host, "--json", *extra, timeout=1800)


@pytest.fixture(scope="session")
def promoted(cpu_build, tmp_path_factory):
    """The first smoke test of the session: all checks, then promotion (test_smoke_cpu.py checks
    it; test_board.py makes a board of it)."""
    registry = cpu_build["registry"]
    reports = tmp_path_factory.mktemp("reports")
    started = time.monotonic()
    done = smoke(registry, cpu_build["record"]["image"], "--promote", "--report-dir", str(reports))
    return {"done": done, "report": json.loads(done.stdout) if done.stdout.strip().startswith("{") else None,
            "seconds": time.monotonic() - started, "reports": reports, **cpu_build}

"""RegistryClient against real Distribution registries (plain, TLS + htpasswd, Bearer tokens)."""

from __future__ import annotations

import base64
import json
import os
import uuid

import pytest

from builder.errors import InputError, ServiceError, StepFailed
from builder.oci import registry as registry_module
from builder.oci import transport
from builder.oci.auth import parse_challenges
from builder.oci.credentials import docker_config_credentials
from builder.oci.registry import (
    OCI_INDEX,
    RegistryClient,
    sha256_digest,
)
from builder.oci.transport import RegistryNotFound

pytestmark = pytest.mark.integration


def _repo(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}/img"


@pytest.fixture
def no_ambient_trust(monkeypatch, tmp_path):
    """No CA from the environment or /etc/docker/certs.d: each test says where trust comes from."""
    monkeypatch.delenv("BUILDER_REGISTRY_CA", raising=False)
    monkeypatch.setattr(transport, "DOCKER_CERTS_DIR", tmp_path / "certs.d")
    return tmp_path / "certs.d"


# -- manifests, tags, blobs (plain HTTP) --------------------------------------------------------------
def test_head_get_put_roundtrip(plain_registry, image_pusher):
    client, repo = plain_registry.client(), _repo()
    digest = image_pusher(client, repo, "v1", {"org.llmfactory.cell": "c1"})
    info = client.head_manifest(repo, "v1")
    assert info.digest == digest and info.media_type.endswith("manifest.v2+json") and info.size > 0
    body, media_type, got = client.get_manifest(repo, digest)
    assert got == digest == sha256_digest(body) and media_type == info.media_type
    assert client.head_manifest(repo, "missing") is None
    with pytest.raises(RegistryNotFound) as err:
        client.get_manifest(repo, "missing")
    assert f"{repo}:missing" in str(err.value) and plain_registry.host in str(err.value)
    assert err.value.exit_code == 1
    assert "scheme='http'" in repr(client)  # loopback: https failed, http remembered


def test_tags_and_catalog_pagination(plain_registry, image_pusher):
    client, prefix = plain_registry.client(), f"pg-{uuid.uuid4().hex[:6]}"
    repo = f"{prefix}-0/img"
    for i in range(7):
        image_pusher(client, repo, f"t{i}", content=str(i).encode())
    assert sorted(client.tags(repo, page_size=3)) == [f"t{i}" for i in range(7)]
    assert client.tags(f"{prefix}-never/img") == []
    for i in range(1, 5):
        image_pusher(client, f"{prefix}-{i}/img", "v1")
    before = len(plain_registry.access_log())
    repos = client.catalog(page_size=2)  # Distribution 2.8 pages the catalog with Link headers
    assert {f"{prefix}-{i}/img" for i in range(5)} <= set(repos) and len(repos) == len(set(repos))
    pages = [l for l in plain_registry.access_log()[before:] if l.startswith("GET /v2/_catalog")]
    assert len(pages) >= 3 and any("last=" in l for l in pages)


def test_copy_under_another_tag_keeps_digest_and_moves_no_blob(plain_registry, image_pusher):
    client, repo = plain_registry.client(), _repo()
    digest = image_pusher(client, repo, "cell-abc123", {"org.llmfactory.cell": "cell"})
    before = len(plain_registry.access_log())
    body, media_type, _ = client.get_manifest(repo, digest)
    assert client.put_manifest(repo, "cell", body, media_type) == digest
    assert client.head_manifest(repo, "cell").digest == digest
    during = plain_registry.access_log()[before:]
    assert not [l for l in during if "/blobs/" in l], during


def test_push_blob_skips_existing_and_get_blob_verifies(plain_registry):
    client, repo = plain_registry.client(), _repo()
    data = os.urandom(1000)
    digest = client.push_blob(repo, data)
    before = len(plain_registry.access_log())
    assert client.push_blob(repo, data) == digest and client.blob_exists(repo, digest)
    assert not [l for l in plain_registry.access_log()[before:] if l.startswith("POST")]
    assert client.get_blob(repo, digest) == data
    assert not client.blob_exists(repo, sha256_digest(b"never pushed"))


def test_image_labels_of_oci_image_and_index(plain_registry, image_pusher):
    client, repo = plain_registry.client(), _repo()
    arm = image_pusher(client, repo, "arm", {"which": "arm64"}, arch="arm64", oci=True)
    amd = image_pusher(client, repo, "amd", {"which": "amd64"}, oci=True)
    assert client.image_labels(repo, "arm") == {"which": "arm64"}
    entries = [{"mediaType": client.head_manifest(repo, d).media_type, "digest": d,
                "size": client.head_manifest(repo, d).size, "platform": {"os": "linux", "architecture": a}}
               for d, a in ((arm, "arm64"), (amd, "amd64"))]
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
    client.put_manifest(repo, "multi", index, OCI_INDEX)
    assert client.head_manifest(repo, "multi").media_type == OCI_INDEX
    assert client.image_labels(repo, "multi") == {"which": "amd64"}  # linux/amd64 wins over the first


def test_registry_down_is_a_service_error(registry_bin):
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
        with pytest.raises(ServiceError) as err:
            RegistryClient(host).ping()
        assert f"registry {host} unreachable" in str(err.value) and err.value.exit_code == 3


# -- TLS + htpasswd ---------------------------------------------------------------------------------
def test_tls_basic_auth_with_the_right_password(tls_registry, image_pusher, no_ambient_trust):
    client = tls_registry.client(username=tls_registry.user, password=tls_registry.password,
                                 ca_bundle=tls_registry.ca)
    client.ping()
    repo = _repo()
    digest = image_pusher(client, repo, "v1", {"k": "v"})
    assert client.head_manifest(repo, "v1").digest == digest and "scheme='https'" in repr(client)
    assert tls_registry.password not in repr(client) and tls_registry.password not in str(vars(client))
    assert client.docker_auth() == {"username": tls_registry.user, "password": tls_registry.password,
                                    "serveraddress": tls_registry.host}


def test_tls_wrong_password_is_refused_without_leaking_it(tls_registry, no_ambient_trust):
    secret = "wrong-" + tls_registry.password
    client = RegistryClient(tls_registry.host, tls_registry.user, secret, ca_bundle=tls_registry.ca)
    for call in (client.ping, lambda: client.head_manifest("x/y", "latest"),
                 lambda: client.push_blob("x/y", b"data")):
        with pytest.raises(ServiceError) as err:
            call()
        message = str(err.value)
        assert f"registry {tls_registry.host} refused the credentials (401)" in message
        assert "BUILDER_REGISTRY_USER" in message and f"docker login {tls_registry.host}" in message
        assert secret not in message and secret not in repr(err.value) and err.value.__cause__ is None
    assert secret not in repr(client)
    with pytest.raises(ServiceError, match="requires credentials"):
        RegistryClient(tls_registry.host, ca_bundle=tls_registry.ca).ping()


def test_tls_trust_from_env_and_docker_certs_dir(tls_registry, no_ambient_trust, monkeypatch):
    with pytest.raises(ServiceError, match="not trusted: set BUILDER_REGISTRY_CA"):
        RegistryClient(tls_registry.host, tls_registry.user, tls_registry.password).ping()
    monkeypatch.setenv("BUILDER_REGISTRY_CA", str(tls_registry.ca))
    RegistryClient(tls_registry.host, tls_registry.user, tls_registry.password).ping()
    monkeypatch.delenv("BUILDER_REGISTRY_CA")
    (no_ambient_trust / tls_registry.host).mkdir(parents=True)
    (no_ambient_trust / tls_registry.host / "ca.crt").write_bytes(tls_registry.ca.read_bytes())
    RegistryClient(tls_registry.host, tls_registry.user, tls_registry.password).ping()


# -- credentials from the environment -----------------------------------------------------------------
@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in ("BUILDER_REGISTRY_USER", "BUILDER_REGISTRY_PASSWORD", "BUILDER_REGISTRY_PASSWORD_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    (tmp_path / "docker").mkdir()
    return tmp_path / "docker"


def test_credentials_from_env_and_password_file(tls_registry, clean_env, monkeypatch, no_ambient_trust):
    monkeypatch.setenv("BUILDER_REGISTRY_USER", tls_registry.user)
    monkeypatch.setenv("BUILDER_REGISTRY_PASSWORD", tls_registry.password)
    RegistryClient.from_environment(tls_registry.host, ca_bundle=tls_registry.ca).ping()
    monkeypatch.delenv("BUILDER_REGISTRY_PASSWORD")
    with pytest.raises(InputError, match="set both"):
        RegistryClient.from_environment(tls_registry.host)
    secret_file = clean_env / "pw"
    secret_file.write_text(tls_registry.password + "\n")
    monkeypatch.setenv("BUILDER_REGISTRY_PASSWORD_FILE", str(secret_file))
    RegistryClient.from_environment(tls_registry.host, ca_bundle=tls_registry.ca).ping()


def test_credentials_from_docker_config_and_helper(tls_registry, clean_env, monkeypatch, tmp_path,
                                                   no_ambient_trust):
    host, user, password = tls_registry.host, tls_registry.user, tls_registry.password
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (clean_env / "config.json").write_text(json.dumps({"auths": {f"https://{host}": {"auth": auth}}}))
    assert docker_config_credentials(host) == (user, password)
    RegistryClient.from_environment(host, ca_bundle=tls_registry.ca).ping()
    # a credential helper: docker-credential-<name> get, the host on stdin, JSON on stdout
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-testhelper"
    helper.write_text("#!/bin/sh\nread host\n"
                      f"[ \"$host\" = \"{host}\" ] || {{ echo 'credentials not found in native keychain'; exit 1; }}\n"
                      f"echo '{{\"ServerURL\":\"{host}\",\"Username\":\"{user}\",\"Secret\":\"{password}\"}}'\n")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    (clean_env / "config.json").write_text(json.dumps({"credHelpers": {host: "testhelper"}}))
    assert docker_config_credentials(host) == (user, password)
    (clean_env / "config.json").write_text(json.dumps({"credsStore": "testhelper"}))
    assert docker_config_credentials(host) == (user, password)
    assert docker_config_credentials("other.example:5000") is None
    (clean_env / "config.json").write_text(json.dumps({"credHelpers": {host: "absent"}}))
    with pytest.raises(InputError, match="docker-credential-absent"):
        docker_config_credentials(host)


# -- Bearer tokens ---------------------------------------------------------------------------------
def test_bearer_token_flow(token_registry, image_pusher):
    tokens = token_registry.extra["tokens"]
    client = token_registry.client(username=token_registry.user, password=token_registry.password)
    client.ping()
    repo = _repo()
    digest = image_pusher(client, repo, "v1", {"k": "v"})
    asked = len(tokens.requests)
    assert client.head_manifest(repo, "v1").digest == digest  # cached pull token: no new request
    assert client.image_labels(repo, "v1") == {"k": "v"}
    assert len(tokens.requests) == asked
    scopes = [(s.rpartition(":")[0], set(s.rpartition(":")[2].split(","))) for r in tokens.requests
              for s in r["scope"]]  # the registry orders the actions at random (a Go map)
    assert (f"repository:{repo}", {"pull", "push"}) in scopes and all(r["auth"] for r in tokens.requests)
    bad = RegistryClient(token_registry.host, token_registry.user, "not-" + token_registry.password)
    with pytest.raises(ServiceError) as err:
        bad.head_manifest(repo, "v1")
    assert "refused the credentials" in str(err.value) and token_registry.password not in str(err.value)
    with pytest.raises(ServiceError, match="requires credentials"):
        RegistryClient(token_registry.host).head_manifest(repo, "v1")


def test_parse_challenges():
    [bearer] = parse_challenges('Bearer realm="https://auth.example/token",service="registry.example",'
                                'scope="repository:a/b:pull,push"')
    assert bearer.scheme == "bearer" and bearer.params == {
        "realm": "https://auth.example/token", "service": "registry.example", "scope": "repository:a/b:pull,push"}
    basic, bearer2 = parse_challenges('Basic realm="Registry Realm", Bearer realm="https://x/t",error="invalid_token"')
    assert basic.scheme == "basic" and basic.params == {"realm": "Registry Realm"}
    assert bearer2.params == {"realm": "https://x/t", "error": "invalid_token"}
    assert parse_challenges("") == [] and parse_challenges('Basic realm="a \\"q\\""')[0].params["realm"] == 'a "q"'


def test_other_errors_name_the_registry(plain_registry):
    client = plain_registry.client()
    with pytest.raises(StepFailed) as err:  # a manifest whose blobs the registry never saw
        client.put_manifest(_repo(), "bad", json.dumps({"schemaVersion": 2, "mediaType": registry_module.DOCKER_V2,
                                                        "config": {"mediaType": "x", "digest": sha256_digest(b"?"),
                                                                   "size": 1}, "layers": []}).encode(),
                            registry_module.DOCKER_V2)
    assert plain_registry.host in str(err.value) and "MANIFEST_BLOB_UNKNOWN" in str(err.value)

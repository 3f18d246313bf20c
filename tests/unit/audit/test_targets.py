"""`builder audit`'s pure parts: what the target is, which arch names go, how an image is pulled."""

from __future__ import annotations

import zipfile

import docker
import pytest

from builder.audit import targets as audit
from builder.errors import InputError, ServiceError


def test_classify_dir_wheel_and_image(tmp_path):
    wheel = tmp_path / "vllm-0.0.0-cp38-abi3-linux_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("vllm/__init__.py", "")
    assert audit.classify(str(tmp_path)) == audit.AuditTarget(kind=audit.DIR, ref=str(tmp_path))
    assert audit.classify(str(wheel)).kind == audit.WHEEL
    for image in ("vllm/vllm-openai:v0.20.2", "127.0.0.1:5000/llm-factory/images:vllm-0.20.2-sm_90-abc",
                  "llm-factory/images@sha256:" + "a" * 64, "busybox"):
        assert audit.classify(image) == audit.AuditTarget(kind=audit.IMAGE, ref=image)


@pytest.mark.parametrize("name, message", [
    ("/no/such/dir", "path does not exist"), ("./missing", "path does not exist"),
    ("missing.whl", "path does not exist"), ("Not An Image", "path does not exist"),
])
def test_classify_missing_paths(name, message):
    with pytest.raises(InputError, match=message):
        audit.classify(name)


def test_classify_a_file_that_is_no_wheel(tmp_path):
    for name, data in (("notes.txt", b"x"), ("fake.whl", b"not a zip")):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputError, match="neither a wheel"):
            audit.classify(str(tmp_path / name))


def test_check_arch():
    audit.check_arch("sm_90", ("sm_90", "sm_121a"))
    audit.check_arch("sm_100", None)  # no matrix: any GPU arch name
    with pytest.raises(InputError, match=r"^--arch: unknown arch 'sm121a' \(known: sm_121a, sm_90\)$"):
        audit.check_arch("sm121a", ("sm_90", "sm_121a"))
    with pytest.raises(InputError, match="is no GPU arch"):
        audit.check_arch("cpu", None)


class FakeImages:
    def __init__(self, error: Exception | None = None):
        self.pulled, self.error = [], error

    def get(self, reference):
        raise docker.errors.ImageNotFound(reference)

    def pull(self, reference, auth_config=None):
        if self.error:
            raise self.error
        self.pulled.append((reference, auth_config))


class FakeClient:
    def __init__(self, error: Exception | None = None):
        self.images = FakeImages(error)


def test_ensure_local_pulls_with_the_users_registry_credentials(monkeypatch):
    monkeypatch.setenv("BUILDER_REGISTRY_USER", "factory")
    monkeypatch.setenv("BUILDER_REGISTRY_PASSWORD", "pw")
    client = FakeClient()
    audit.ensure_local(client, "127.0.0.1:5000/llm-factory/images:x", "127.0.0.1:5000")
    ((reference, auth),) = client.images.pulled
    assert reference == "127.0.0.1:5000/llm-factory/images:x" and auth and auth["username"] == "factory"
    audit.ensure_local(client, "vllm/vllm-openai:v0.20.2", "127.0.0.1:5000")  # another registry: the Engine's own
    assert client.images.pulled[-1] == ("vllm/vllm-openai:v0.20.2", None)


def test_a_pull_that_fails_is_a_service_error():
    client = FakeClient(docker.errors.APIError("Get https://registry-1.docker.io/v2/: dial tcp: no route"))
    with pytest.raises(ServiceError, match="cannot pull vllm/vllm-openai:x"):
        audit.ensure_local(client, "vllm/vllm-openai:x", None)

"""Base images by digest, for real: the Engine (20.10, BuildKit), two Distribution registries.

A re-created local base makes the cpu cell stale while an unchanged one stays a lookup; a
two-platform index is locked, mirrored to a second registry, deleted from the first, and the
cpu cell still builds from the mirror; an upstream tag that moves makes `--check` fail with one
line naming the base. The cpu builds reuse BuildKit's cache where the base's layers are the same.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
import time
import uuid
from pathlib import Path

import pytest

from builder.oci.registry import DOCKER_V2, OCI_INDEX, RegistryClient
from tests.conftest import REPO, run_builder
from tests.integration.conftest import push_image, start_registry, stop_registry
from tests.integration.cpu_cell import BASE, CELL, WHEELS

pytestmark = pytest.mark.integration
DOCKER = "/usr/bin/docker"  # the 20.10 client drives BuildKit without buildx


def docker(*args: str) -> str:
    done = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"docker {' '.join(args)}: {done.stdout}\n{done.stderr}"
    return done.stdout.strip()


def cpu_matrix(directory: Path, base: str, extra: str = "") -> Path:
    """The shipped matrix with the cpu cell's base replaced (and optional top-level settings)."""
    text = (REPO / "matrix.yaml").read_text()
    assert f"wheel: {BASE}" in text
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "matrix.yaml"
    path.write_text(text.replace(f"wheel: {BASE}", f'wheel: "{base}"') + extra)
    return path


def build_cpu(matrix: Path, registry: str, workdir: Path) -> tuple[subprocess.CompletedProcess, dict]:
    done = run_builder("build", "--matrix", str(matrix), "--cell", CELL, "--registry", registry,
                       "--find-links", str(WHEELS), "--workdir", str(workdir))
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    return done, json.loads((workdir / "logs" / f"{CELL}.json").read_text())


@pytest.fixture(scope="module")
def derived_base(cpu_base, tmp_path_factory):
    """An image with the local base's layers and another config (a LABEL): what `builder base
    create` run again gives, without debootstrap's minute. BuildKit's cache makes its id stable
    within a session."""
    context = tmp_path_factory.mktemp("derived")
    (context / "Dockerfile").write_text(f"FROM {BASE}\nLABEL org.llmfactory.test-base=recreated\n")
    iid, tag = context / "iid", f"llm-factory-test/derived-base:{uuid.uuid4().hex[:8]}"
    done = subprocess.run([DOCKER, "build", "--iidfile", str(iid), "--tag", tag, str(context)],
                          env={"DOCKER_BUILDKIT": "1", "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    yield iid.read_text().strip()  # tagged for the session, so untagging a test's name keeps it
    docker("rmi", tag)


@pytest.fixture(scope="module")
def mirror_registry(registry_bin, tmp_path_factory):
    server = start_registry(registry_bin, tmp_path_factory.mktemp("registry-mirror"))
    yield server
    stop_registry(server)


def test_recreated_local_base_rebuilds_while_unchanged_stays_a_lookup(plain_registry, cpu_base, derived_base,
                                                                      docker_client, tmp_path):
    name = f"llm-factory-test/base-{uuid.uuid4().hex[:8]}:3.11"
    docker("tag", BASE, name)
    try:
        matrix = cpu_matrix(tmp_path / "m", name)
        _, built = build_cpu(matrix, plain_registry.host, tmp_path / "w1")
        original = docker_client.images.get(BASE).id
        assert built["base"] == {"reference": name, "digest": original, "from": name, "local": True,
                                 "origin": "engine"}
        started = time.monotonic()
        again, same = build_cpu(matrix, plain_registry.host, tmp_path / "w2")
        assert time.monotonic() - started < 30
        assert same["status"] == "up to date" and same["image"] == built["image"] and "up to date" in again.stdout
        docker("tag", derived_base, name)  # the base is re-created under the same name
        _, rebuilt = build_cpu(matrix, plain_registry.host, tmp_path / "w3")
        assert rebuilt["status"] == "built" and rebuilt["content_hash"] != built["content_hash"]
        assert rebuilt["base"]["digest"] == derived_base
        labels = docker_client.images.get(rebuilt["image"]).labels
        assert labels["org.opencontainers.image.base.digest"] == derived_base
        assert labels["org.opencontainers.image.base.name"] == name
        context = (tmp_path / "w3" / "contexts" / CELL / "Dockerfile").read_text()
        assert f"FROM {name}\n" in context  # a local base is named by its tag (no id form builds)
    finally:
        docker("rmi", name)


def _layer(text: bytes) -> tuple[bytes, str]:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("etc/arm64-marker")
        info.size, info.mtime = len(text), 0
        tar.addfile(info, io.BytesIO(text))
    return gzip.compress(raw.getvalue(), mtime=0), "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()


def make_index(client: RegistryClient, repo: str, tag: str, amd64_tag: str) -> str:
    """An OCI index: the pushed amd64 image and a crafted arm64 one (config + one layer)."""
    blob, diff_id = _layer(b"arm64\n")
    config = json.dumps({"architecture": "arm64", "variant": "v8", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    arm = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_V2,
                      "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                                 "digest": client.push_blob(repo, config), "size": len(config)},
                      "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                                  "digest": client.push_blob(repo, blob), "size": len(blob)}]}).encode()
    arm_digest = client.put_manifest(repo, f"{tag}-arm64", arm, DOCKER_V2)
    amd = client.head_manifest(repo, amd64_tag)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": amd.media_type, "digest": amd.digest, "size": amd.size,
         "platform": {"architecture": "amd64", "os": "linux"}},
        {"mediaType": DOCKER_V2, "digest": arm_digest, "size": len(arm),
         "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}}]}
    return client.put_manifest(repo, tag, json.dumps(index).encode(), OCI_INDEX)


def test_multiplatform_base_locked_mirrored_deleted_and_still_built(plain_registry, mirror_registry, derived_base,
                                                                   tmp_path):
    source = RegistryClient(plain_registry.host)
    repo = f"upstream-{uuid.uuid4().hex[:8]}/python"
    amd64 = f"{plain_registry.host}/{repo}:3.11-amd64"
    docker("tag", derived_base, amd64)
    docker("push", amd64)
    docker("rmi", amd64)
    index = make_index(source, repo, "3.11", "3.11-amd64")
    reference = f"{plain_registry.host}/{repo}:3.11"
    mirror = f"{mirror_registry.host}/factory/bases"
    matrix = cpu_matrix(tmp_path / "m", reference)
    done = run_builder("bases", "lock", "--matrix", str(matrix), "--arch", "cpu")
    assert done.returncode == 0, done.stderr
    lock = (tmp_path / "m" / "bases.lock").read_text()
    assert f"\n{reference} {index} " in lock
    done = run_builder("bases", "mirror", "--matrix", str(matrix), "--arch", "cpu", "--to", mirror)
    assert done.returncode == 0, done.stderr
    mirrored_repo = f"factory/bases/{plain_registry.host.replace(':', '-')}/{repo}"
    target = RegistryClient(mirror_registry.host)
    assert target.head_manifest(mirrored_repo, "3.11").digest == index  # tag and digest as upstream
    children = [m["digest"] for m in json.loads(target.get_manifest(mirrored_repo, index)[0])["manifests"]]
    assert all(target.head_manifest(mirrored_repo, child).digest == child for child in children)
    assert "copied" in done.stderr and len(children) == 2
    for digest in [index, *children]:  # upstream deletes it
        source.request("DELETE", f"/v2/{repo}/manifests/{digest}", repo=repo, push=True, what="a delete")
    assert source.head_manifest(repo, "3.11") is None and source.head_manifest(repo, index) is None
    # the check passes: upstream is gone, but the mirror holds the locked digest
    mirrored_matrix = cpu_matrix(tmp_path / "m", reference, f"bases: {{mirror: {mirror}, from_mirror: true}}\n")
    done = run_builder("bases", "lock", "--check", "--matrix", str(mirrored_matrix), "--arch", "cpu")
    assert done.returncode == 0, done.stderr
    _, built = build_cpu(mirrored_matrix, plain_registry.host, tmp_path / "w")
    assert built["base"]["from"] == f"{mirror_registry.host}/{mirrored_repo}:3.11@{index}"
    assert built["base"]["origin"] == "lock" and built["base"]["digest"] == index
    dockerfile = (tmp_path / "w" / "contexts" / CELL / "Dockerfile").read_text()
    assert f"FROM {mirror_registry.host}/{mirrored_repo}:3.11@{index}\n" in dockerfile
    # the hash is the upstream build's: where the bytes come from is not what they are
    upstream = run_builder("build", "--dry-run", "--matrix", str(matrix), "--cell", CELL,
                           "--registry", plain_registry.host, "--find-links", str(WHEELS))
    assert upstream.returncode == 0 and built["image"] in upstream.stdout


def test_stale_lock_fails_the_check_in_one_line_naming_the_base(plain_registry, tmp_path):
    client = RegistryClient(plain_registry.host)
    repo = f"moving-{uuid.uuid4().hex[:8]}/base"
    push_image(client, repo, "1", content=b"first\n")
    reference = f"{plain_registry.host}/{repo}:1"
    matrix = cpu_matrix(tmp_path, reference)
    assert run_builder("bases", "lock", "--matrix", str(matrix), "--arch", "cpu").returncode == 0
    ok = run_builder("bases", "lock", "--check", "--matrix", str(matrix), "--arch", "cpu")
    assert ok.returncode == 0 and "the lock holds" in ok.stdout
    moved = push_image(client, repo, "1", content=b"second\n")  # upstream re-pushes the tag
    stale = run_builder("bases", "lock", "--check", "--matrix", str(matrix), "--arch", "cpu")
    assert stale.returncode == 1
    lines = stale.stderr.strip().splitlines()
    assert len(lines) == 1 and reference in lines[0] and moved in lines[0] and "moved" in lines[0]
    # and the builds keep using the locked digest until the lock is refreshed
    plan = run_builder("build", "--dry-run", "--matrix", str(matrix), "--cell", CELL)
    assert plan.returncode == 0 and f"{reference}@{moved}" not in plan.stdout and "digest from the lock" in plan.stdout

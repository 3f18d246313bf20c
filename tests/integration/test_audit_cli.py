"""The older-generation blind spot and `builder audit` on real cubins (nvcc 13.0, cuobjdump 13.x).

libsplit90.so is the library seen on the H200: kernel k built for sm_90, kernel kb only as sm_80 SASS
without PTX (there kb failed at launch with cudaErrorNoKernelImageForDevice while k ran). The audit
used to pass it because some kernels run on sm_90; now kb fails it by name. With compute_80 PTX for kb
(libsplit90ptx.so) it passes: the driver JITs the PTX. The CLI is run as a user would: on the directory,
on a wheel holding the library as vllm/_C.abi3.so, and on a local image built FROM the cpu base.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from builder.audit.cuobjdump import audit_directory
from builder.buildkit.tool import detect_build_tool
from builder.names import ENGINE_LABEL
from tests.conftest import run_builder
from tests.integration.cpu_cell import BASE
from tests.integration.test_kernelaudit_cubins import KERNEL, KERNEL_B, _run

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> dict[str, Path]:
    """{"fail": dir with libsplit90.so, "pass": dir with libsplit90ptx.so}; two TUs linked by g++
    (nvcc -shared would add a device-link cubin for its default arch)."""
    nvcc, host_cc = shutil.which("nvcc"), shutil.which("g++") or shutil.which("c++")
    if nvcc is None:
        pytest.skip("nvcc not found on PATH: these tests compile real cubins")
    root = tmp_path_factory.mktemp("split")
    (root / "k.cu").write_text(KERNEL)
    (root / "kb.cu").write_text(KERNEL_B)
    compile_ = [nvcc, "-c", "-Xcompiler", "-fPIC"]
    jobs = [[*compile_, "-gencode=arch=compute_90,code=sm_90", "-o", "k90.o", "k.cu"],
            [*compile_, "-gencode=arch=compute_80,code=sm_80", "-o", "kb80.o", "kb.cu"],
            [*compile_, "-gencode=arch=compute_80,code=[sm_80,compute_80]", "-o", "kb80ptx.o", "kb.cu"]]
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda argv: _run(argv, root), jobs))
    dirs = {"fail": root / "fail", "pass": root / "pass"}
    for (verdict, folder), kb in zip(dirs.items(), ("kb80.o", "kb80ptx.o")):
        folder.mkdir()
        name = "libsplit90.so" if verdict == "fail" else "libsplit90ptx.so"
        _run([host_cc, "-shared", "-o", str(folder / name), "k90.o", kb], root)
    return dirs


def test_a_kernel_with_only_older_generation_sass_fails_the_library(split):
    done = audit_directory(split["fail"], "sm_90")
    (lib,) = done.libraries
    assert (lib.verdict, lib.stranded, lib.reasons) == ("fail", ("_Z2kbPf",), ("older_generation",))
    assert lib.detail == "carries sm_80 only for 1 of 2 kernels (e.g. _Z2kbPf); no SASS or PTX usable on sm_90"
    assert not done.ok and "_Z2kbPf" in done.summary()


def test_ptx_for_the_older_kernel_passes(split):
    done = audit_directory(split["pass"], "sm_90")
    assert done.ok and done.libraries[0].detail == "runs on sm_90: sm_90 SASS"


def test_on_the_older_gpu_both_kernels_run(split):
    assert audit_directory(split["fail"], "sm_86").ok  # sm_80 SASS runs on 8.6; sm_90 code is for newer GPUs


def test_cli_audit_dir_json_names_the_stranded_kernel(split):
    done = run_builder("audit", str(split["fail"]), "--arch", "sm_90", "--json")
    assert done.returncode == 1, done.stderr
    data = json.loads(done.stdout)
    assert data["ok"] is False and data["root"] == str(split["fail"])
    assert data["libraries"][0]["stranded_examples"] == ["_Z2kbPf"]
    assert data["libraries"][0]["stranded_reasons"] == ["older_generation"]
    assert "libsplit90.so carries sm_80 only" in data["failures"][0]


def test_cli_audit_dir_text_passes_with_ptx(split):
    done = run_builder("audit", str(split["pass"]), "--arch", "sm_90")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["kernel audit sm_90: PASS (1 pass, 0 fail, 0 skipped)",
                                        "  pass libsplit90ptx.so runs on sm_90: sm_90 SASS"]


def _wheel(path: Path, library: Path) -> Path:
    """A minimal wheel whose vllm package carries `library` as its _C extension."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("vllm/__init__.py", "")
        archive.write(library, "vllm/_C.abi3.so")
        archive.writestr("vllm-0.0.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: vllm\nVersion: 0.0.0\n")
        archive.writestr("vllm-0.0.0.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: false\n"
                                                       "Tag: cp38-abi3-linux_x86_64\n")
        archive.writestr("vllm-0.0.0.dist-info/RECORD", "")
    return path


def test_cli_audit_wheel(split, tmp_path):
    wheel = _wheel(tmp_path / "vllm-0.0.0-cp38-abi3-linux_x86_64.whl", split["fail"] / "libsplit90.so")
    done = run_builder("audit", str(wheel), "--arch", "sm_90", "--json")
    assert done.returncode == 1, done.stderr
    data = json.loads(done.stdout)
    assert data["root"] == str(wheel)
    assert [(lib["path"], lib["stranded_examples"]) for lib in data["libraries"]] == [("vllm/_C.abi3.so", ["_Z2kbPf"])]
    good = _wheel(tmp_path / "vllm-0.0.1-cp38-abi3-linux_x86_64.whl", split["pass"] / "libsplit90ptx.so")
    assert run_builder("audit", str(good), "--arch", "sm_90").returncode == 0


def test_cli_audit_bad_input_is_one_line_exit_2(split, tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    for args, message in [((str(split["fail"]), "--arch", "sm121a"), "--arch: unknown arch 'sm121a' (known: "),
                          ((str(tmp_path / "missing"), "--arch", "sm_90"), "path does not exist"),
                          ((str(tmp_path / "notes.txt"), "--arch", "sm_90"), "neither a wheel")]:
        done = run_builder("audit", *args)
        assert done.returncode == 2 and message in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr


def test_cli_audit_local_image(split, docker_client, cpu_base, tmp_path):
    """An image built FROM the local base with BuildKit (no `# syntax=` line: it would pull a frontend),
    never started as a server: only `python3 -c` runs in it to locate site-packages."""
    (tmp_path / "_C.abi3.so").write_bytes((split["fail"] / "libsplit90.so").read_bytes())
    site = "/usr/local/lib/python3.11/dist-packages"  # the base's purelib
    # the engine label, as the factory's images carry it: the audit reads which engine's packages to export
    (tmp_path / "Dockerfile").write_text(f"FROM {BASE}\nLABEL {ENGINE_LABEL}=vllm\nCOPY _C.abi3.so {site}/vllm/\n")
    tag = f"llm-factory-test/audit-cli:{uuid.uuid4().hex[:12]}"
    docker = detect_build_tool().docker  # a docker client that drives the Engine's BuildKit without buildx
    built = subprocess.run([docker, "build", "-q", "-t", tag, str(tmp_path)], capture_output=True, text=True,
                           timeout=300, env={**os.environ, "DOCKER_BUILDKIT": "1"}, check=False)
    assert built.returncode == 0, built.stderr
    (tmp_path / "Dockerfile.unlabelled").write_text(f"FROM {BASE}\nCOPY _C.abi3.so {site}/vllm/\n")
    unlabelled = subprocess.run([docker, "build", "-q", "-f", str(tmp_path / "Dockerfile.unlabelled"), "-t",
                                 f"{tag}-unlabelled", str(tmp_path)], capture_output=True, text=True,
                                timeout=300, env={**os.environ, "DOCKER_BUILDKIT": "1"}, check=False)
    assert unlabelled.returncode == 0, unlabelled.stderr
    try:
        done = run_builder("audit", tag, "--arch", "sm_90", "--json")
        # no engine label: which packages to read is the engine's to say, so the user names it
        unknown = run_builder("audit", f"{tag}-unlabelled", "--arch", "sm_90")
        named = run_builder("audit", f"{tag}-unlabelled", "--arch", "sm_90", "--engine", "vllm")
    finally:
        docker_client.images.remove(tag, force=True)
        docker_client.images.remove(f"{tag}-unlabelled", force=True)
    assert unknown.returncode == 2 and "has no engine label" in unknown.stderr and "--engine" in unknown.stderr
    assert named.returncode == 1 and "Traceback" not in named.stderr
    assert done.returncode == 1, done.stderr
    data = json.loads(done.stdout)
    assert data["root"] == tag and data["libraries"][0]["path"] == "vllm/_C.abi3.so"
    assert data["libraries"][0]["stranded_examples"] == ["_Z2kbPf"]

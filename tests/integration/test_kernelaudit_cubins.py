"""The kernel audit on real shared libraries: tiny kernels compiled by nvcc, read by the real cuobjdump.

Needs nvcc (skips without it) and cuobjdump (PATH or the nvidia-cuda-cuobjdump wheel; fails without
it: it is a test dependency). The libraries are compiled once per module, two at a time (CI has 2 cores).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from builder.audit import cuobjdump as kc
from builder.audit.cuobjdump import audit_directory
from builder.audit.rules import PTX, SASS, DeviceTarget

pytestmark = pytest.mark.integration

KERNEL = "__global__ void k(float *x) { x[threadIdx.x] += 1.0f; }\nvoid run(float *x) { k<<<1, 32>>>(x); }\n"
KERNEL_B = "__global__ void kb(float *x) { x[threadIdx.x] *= 2.0f; }\nvoid run_b(float *x) { kb<<<1, 32>>>(x); }\n"
LIBRARIES = {  # name: -gencode arch=...,code=... pairs
    "libk121a.so": ["compute_121a,sm_121a"],
    "libk120a.so": ["compute_120a,sm_120a"],
    "libkptx120.so": ["compute_120,compute_120"],
    "libkmix.so": ["compute_90a,sm_90a", "compute_120a,sm_120a"],
}


def _run(argv: list[str], cwd: Path) -> None:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(argv)}:\n{done.stderr}"


@pytest.fixture(scope="module")
def libs(tmp_path_factory) -> Path:
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not found on PATH: the kernel-audit integration tests compile real cubins")
    root = tmp_path_factory.mktemp("kernels")
    (root / "k.cu").write_text(KERNEL)
    (root / "kb.cu").write_text(KERNEL_B)
    shared = [nvcc, "-shared", "-Xcompiler", "-fPIC"]
    jobs = [[*shared, *(f"-gencode=arch={g.split(',')[0]},code={g.split(',')[1]}" for g in gencodes),
             "-o", name, "k.cu"] for name, gencodes in LIBRARIES.items()]
    # libsplit.so: two translation units, k for sm_121a and kb for sm_120a only, linked by the host
    # compiler (nvcc -shared would add a device-link cubin for its default arch).
    jobs += [[nvcc, "-c", "-Xcompiler", "-fPIC", "-gencode=arch=compute_121a,code=sm_121a", "-o", "a.o", "k.cu"],
             [nvcc, "-c", "-Xcompiler", "-fPIC", "-gencode=arch=compute_120a,code=sm_120a", "-o", "b.o", "kb.cu"]]
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda argv: _run(argv, root), jobs))
    host_cc = shutil.which("g++") or shutil.which("c++")
    _run([host_cc, "-shared", "-o", "libsplit.so", "a.o", "b.o"], root)
    (root / "libhost.c").write_text("int host_only(void) { return 1; }\n")
    _run([host_cc, "-shared", "-fPIC", "-x", "c", "-o", "libhost.so", "libhost.c"], root)
    (root / "libscript.so").write_text("INPUT(-lhost)\n")  # a linker script named .so: not a binary
    (root / "liblink.so").symlink_to(root / "libk120a.so")  # symlinks are not audited twice
    return root


@pytest.fixture(scope="module")
def audit_121a(libs):
    return audit_directory(libs, "sm_121a")


def verdicts(report) -> dict[str, tuple[str, str]]:
    return {lib.path: (lib.verdict, lib.detail) for lib in report.libraries}


def test_find_cuobjdump_finds_an_executable():
    tool = kc.find_cuobjdump()
    assert Path(tool).is_file() and "fat binary" in subprocess.run(
        [tool, "--version"], capture_output=True, text=True, timeout=60).stdout


def test_real_listings(libs):
    tool = kc.find_cuobjdump()
    assert kc.list_targets(tool, libs / "libk121a.so") == [DeviceTarget(SASS, "sm_121a")]
    assert kc.list_targets(tool, libs / "libkptx120.so") == [DeviceTarget(PTX, "sm_120")]
    assert kc.list_targets(tool, libs / "libkmix.so") == [DeviceTarget(SASS, "sm_90a"),
                                                          DeviceTarget(SASS, "sm_120a")]
    assert kc.list_targets(tool, libs / "libhost.so") == []


def test_verdicts_for_an_sm_121a_cell(audit_121a):
    found = verdicts(audit_121a)
    assert set(found) == {"libk121a.so", "libk120a.so", "libkptx120.so", "libkmix.so", "libsplit.so",
                          "libhost.so"}
    assert found["libk121a.so"] == ("pass", "runs on sm_121a: sm_121a SASS")
    assert found["libk120a.so"] == ("fail", "carries sm_120a only; no SASS or PTX usable on sm_121a")
    assert found["libkptx120.so"] == ("pass", "runs on sm_121a via compute_120 (PTX JIT only: slow first load)")
    assert found["libkmix.so"] == ("fail", "carries sm_90a, sm_120a only; no SASS or PTX usable on sm_121a")
    assert found["libsplit.so"] == ("fail", "carries sm_120a only for 1 of 2 kernels (e.g. _Z2kbPf); "
                                            "no SASS or PTX usable on sm_121a")
    assert found["libhost.so"] == ("skip", "has no device code")
    assert not audit_121a.ok
    assert audit_121a.summary().startswith("kernel audit sm_121a: FAIL (2 pass, 3 fail, 1 skipped)")
    assert json.loads(json.dumps(audit_121a.to_dict()))["failures"][0].startswith("libk120a.so carries sm_120a")


def test_mixed_library_passes_on_sm_90(libs):
    done = audit_directory(libs, "sm_90", patterns=("libkmix.so",))
    assert done.ok and done.libraries[0].usable == (DeviceTarget(SASS, "sm_90a"),)


def test_sm_120_cell_runs_sm_120a_but_not_sm_121a(libs):
    found = verdicts(audit_directory(libs, "sm_120", patterns=("libk12*.so",)))
    assert found == {"libk120a.so": ("pass", "runs on sm_120: sm_120a SASS"),
                     "libk121a.so": ("fail", "carries sm_121a only; no SASS or PTX usable on sm_120")}


def test_only_good_libraries_pass_and_optional_ones_do_not_fail(libs):
    good = ("libk121a.so", "libkptx120.so", "libkmix.so", "libhost.so")
    done = audit_directory(libs, "sm_121a", patterns=good, optional=("libkmix*",))
    assert done.ok, done.failures
    assert verdicts(done)["libkmix.so"][0] == "skip"


def test_a_directory_without_device_code_fails(libs):
    done = audit_directory(libs, "sm_121a", patterns=("libhost.so", "libscript.so"))
    assert not done.ok and "no library with device code" in done.summary()


# -- the audit as the smoke test runs it: cubins packaged into images ------------------------------
def _image_with(docker_client, base: str, library: Path, tag: str) -> str:
    """A test image whose vllm package carries one real compiled library as its _C extension."""
    import io
    import tarfile
    dockerfile = f"FROM {base}\nCOPY _C.abi3.so /usr/local/lib/python3.11/dist-packages/vllm/_C.abi3.so\n"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in (("Dockerfile", dockerfile.encode()), ("_C.abi3.so", library.read_bytes())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    docker_client.images.build(fileobj=buffer, custom_context=True, tag=tag, rm=True)
    return tag


@pytest.mark.parametrize("library,verdict", [
    ("libk121a.so", "pass"),
    ("libk120a.so", "fail"),  # sm_120a-only cubins do not load on sm_121a
    ("libkptx120.so", "pass"),  # compute_120 PTX is JIT-compiled for sm_121a
])
def test_audit_of_images_for_an_sm121a_cell(libs, docker_client, cpu_base, library, verdict):
    from builder.audit.image import kernel_audit
    from builder.engines import vllm
    image = _image_with(docker_client, cpu_base, libs / library, f"llm-factory-test/audit:{library.split('.')[0]}")
    try:
        result = kernel_audit(docker_client, image, vllm, "sm_121a", gpu=True, optional=())
    finally:
        docker_client.images.remove(image, force=True)
    assert result.status == verdict, result.evidence
    if verdict == "fail":
        assert "vllm/_C.abi3.so" in result.evidence and "sm_120a" in result.evidence

"""The kernel audit of an image: copy the engine's packages and library directories out of it (the
server never runs) and audit them for the cell's arch. Both `builder smoke` and `builder audit IMAGE` use it."""

from __future__ import annotations

import json
import tarfile
import tempfile
from pathlib import Path

import docker

from builder.audit.cuobjdump import audit_directory
from builder.checkresult import CheckResult
from builder.engines import EngineModule
from builder.errors import StepFailed
from builder.names import SMOKE_LABEL
from builder.oci.container import Container


def export_engine_packages(client: docker.DockerClient, image: str, target: Path, packages: tuple[str, ...],
                           roots: tuple[str, ...] = ()) -> int:
    """Copy the engine's Python packages (and `roots`, absolute directories) out of an image for the
    kernel audit. The container runs only `python3 -c` to locate site-packages, never the server."""
    copied = 0
    if not packages:  # no Python packages (llama.cpp): the image may have no python3; copy the roots only
        try:
            with Container(client, "audit", image=image, entrypoint=["true"], labels={SMOKE_LABEL: "1"}) as box:
                box.wait(timeout=120)
                return sum(_copy_root(box, root, target) for root in roots)
        except docker.errors.DockerException as exc:
            raise StepFailed(f"kernel audit: cannot read {image}: {exc.__class__.__name__}: {exc}") from None
    locate = ("import sysconfig, json; print(json.dumps("
              "sorted({sysconfig.get_paths()['purelib'], sysconfig.get_paths()['platlib']})))")
    try:
        with Container(client, "audit", image=image, entrypoint=["python3", "-c", locate],
                       labels={SMOKE_LABEL: "1"}) as box:
            if box.wait(timeout=120) != 0:
                raise StepFailed(f"{image}: cannot locate its Python packages (python3 failed): {box.logs(lines=3)}")
            sites = json.loads(box.logs(lines=1, stderr=False).strip().splitlines()[-1])
            copied = _copy_packages(box, sites, packages, target)
            copied += sum(_copy_root(box, root, target) for root in roots)
    except docker.errors.DockerException as exc:
        raise StepFailed(f"kernel audit: cannot read {image}: {exc.__class__.__name__}: {exc}") from None
    return copied


def _copy_packages(box: Container, sites: list[str], packages: tuple[str, ...], target: Path) -> int:
    return sum(_copy_tree(box, f"{site}/{package}", target) for site in sites for package in packages)


def _copy_root(box: Container, root: str, target: Path) -> int:
    """An absolute directory of the image, at the same relative path under `target` (the archive
    of /opt/llama.cpp/lib holds lib/..., so it is extracted into target/opt/llama.cpp)."""
    return _copy_tree(box, root, target / Path(root.strip("/")).parent)


def _copy_tree(box: Container, path: str, target: Path) -> int:
    """1 when `path` exists in the container and was extracted under `target`, else 0."""
    try:
        stream, _ = box.handle.get_archive(path)
    except docker.errors.NotFound:
        return 0
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile() as spool:
        for chunk in stream:
            spool.write(chunk)
        spool.seek(0)
        with tarfile.open(fileobj=spool) as tar:
            tar.extractall(target, filter="data")
    return 1


def kernel_audit(client: docker.DockerClient, image: str, engine: EngineModule, arch: str, gpu: bool,
                 optional: tuple[str, ...]) -> CheckResult:
    if not gpu:
        return CheckResult("kernels", "skip", "cpu cell: no CUDA kernels to audit", {})
    with tempfile.TemporaryDirectory(prefix="llm-factory-audit-") as tmp:
        packages = engine.audit_packages
        if export_engine_packages(client, image, Path(tmp), packages, engine.audit_roots) == 0:
            where = ", ".join((*packages, *engine.audit_roots))
            return CheckResult("kernels", "fail", f"none of the engine's packages or directories ({where}) "
                                                  "is in the image", {})
        report = audit_directory(Path(tmp), arch, optional=optional, dispatch_only=engine.audit_dispatch_only)
    return CheckResult("kernels", "pass" if report.ok else "fail", report.summary(), report.to_dict())

"""The kernel audit on its own (`builder audit`), before anything is built or booted: a directory as it
is (an installed site-packages/vllm, a llama.cpp build dir: what runs on a GPU machine without Docker
or network), a wheel (unzipped to a temporary directory, never installed), or an image (its engine
packages exported through the Docker Engine; only `python3 -c` runs in it, never the server).
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from builder.audit.archive import extract_libraries
from builder.audit.cuobjdump import audit_directory
from builder.audit.report import KernelAuditReport
from builder.engines import ENGINES, EngineModule
from builder.errors import InputError, ServiceError, StepFailed
from builder.names import ENGINE_LABEL

TargetKind = Literal["dir", "wheel", "image"]
DIR: Final[TargetKind] = "dir"
WHEEL: Final[TargetKind] = "wheel"
IMAGE: Final[TargetKind] = "image"
# [host[:port]/]name[/name...][:tag][@sha256:digest], as the Docker Engine accepts it
_REFERENCE = re.compile(r"(?:[\w.-]+(?::\d+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
                        r"(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?")


@dataclass(frozen=True, kw_only=True)
class AuditTarget:
    kind: TargetKind
    ref: str  # the path, or the image reference


def classify(target: str) -> AuditTarget:
    """DIR or WHEEL when the path exists; an image reference otherwise (unless it reads as a path)."""
    path = Path(target).expanduser()
    if path.is_dir():
        return AuditTarget(kind=DIR, ref=str(path))
    if path.exists():
        if path.is_file() and path.suffix == ".whl" and zipfile.is_zipfile(path):
            return AuditTarget(kind=WHEEL, ref=str(path))
        raise InputError(f"{target}: neither a wheel (.whl, a zip) nor a directory")
    if target.startswith(("/", "./", "../", "~")) or target.endswith(".whl") or not _REFERENCE.fullmatch(target):
        raise InputError(f"{target}: path does not exist (nor is it an image reference)")
    return AuditTarget(kind=IMAGE, ref=target)


def engine_of_files(target: AuditTarget) -> EngineModule | None:
    """The engine whose packages a directory or wheel holds, from the engine modules' audit_packages: a
    directory named like one (site-packages/vllm) or holding one, a wheel of that distribution; None when
    no engine or several claim it."""
    path = Path(target.ref)
    if target.kind == WHEEL:
        names = {path.name.split("-", 1)[0].lower().replace(".", "_")}
    else:
        names = {path.resolve().name, *(child.name for child in path.iterdir() if child.is_dir())}
    found = [m for m in ENGINES.values() if names & set(m.audit_packages)]
    return found[0] if len(found) == 1 else None


def engine_of_image(labels: dict[str, str]) -> EngineModule | None:
    """The engine a factory-built image names in its engine label (None for other images)."""
    return ENGINES.get(labels.get(ENGINE_LABEL, ""))


def check_arch(arch: str, known: Iterable[str] | None) -> None:
    """`known`: the matrix's GPU archs, or None without a matrix (then any GPU arch name goes)."""
    from builder.audit.rules import parse_arch
    names = sorted(known) if known is not None else None
    if names is not None and arch not in names:
        raise InputError(f"--arch: unknown arch '{arch}' (known: {', '.join(names)})")
    try:
        parse_arch(arch)
    except InputError:
        raise InputError(f"--arch: '{arch}' is no GPU arch (no CUDA kernels to audit)") from None


def _audit(root: Path, arch: str, engine: EngineModule | None, optional: tuple[str, ...],
           label: str) -> KernelAuditReport:
    """engine None: files of no known engine, audited without any engine's old-GPU-only declarations."""
    report = audit_directory(root, arch, optional=optional,
                             dispatch_only=engine.audit_dispatch_only if engine is not None else ())
    return dataclasses.replace(report, root=label)


def audit_dir(root: Path, arch: str, engine: EngineModule | None, optional: tuple[str, ...] = ()) -> KernelAuditReport:
    return _audit(root, arch, engine, optional, str(root))


def audit_wheel(wheel: Path, arch: str, engine: EngineModule | None, optional: tuple[str, ...] = ()) -> KernelAuditReport:
    """Only the shared libraries are unzipped (a vllm wheel is mostly Python)."""
    with tempfile.TemporaryDirectory(prefix="llm-factory-audit-") as tmp:
        extract_libraries(wheel, Path(tmp))  # with size, count and ratio limits (archive.py)
        return _audit(Path(tmp), arch, engine, optional, str(wheel))


def ensure_local(client, image: str, user_registry: str | None) -> None:
    """Pull an image the local Engine lacks: with the user's registry credentials when it is in that
    registry (RegistryClient.docker_auth), else as the Engine pulls on its own."""
    import docker

    from builder.oci import dockerd
    from builder.oci.registry import RegistryClient
    if dockerd.image_id(client, image) is not None:
        return
    auth = None
    if user_registry and image.startswith(user_registry.rstrip("/") + "/"):
        auth = RegistryClient.from_environment(user_registry).docker_auth()
    try:
        client.images.pull(image, auth_config=auth)
    except docker.errors.DockerException as exc:
        detail = str(getattr(exc, "explanation", None) or exc).strip().splitlines()
        raise ServiceError(f"cannot pull {image}: {detail[0] if detail else exc.__class__.__name__}") from None


def audit_image(client, image: str, arch: str, engine: EngineModule,
                optional: tuple[str, ...] = ()) -> KernelAuditReport:
    from builder.audit.image import export_engine_packages
    with tempfile.TemporaryDirectory(prefix="llm-factory-audit-") as tmp:
        if export_engine_packages(client, image, Path(tmp), engine.audit_packages, engine.audit_roots) == 0:
            raise StepFailed(f"{image}: none of the engine's packages ({', '.join(engine.audit_packages)}) "
                             f"nor its audit roots found in the image")
        return _audit(Path(tmp), arch, engine, optional, image)

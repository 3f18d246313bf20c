"""`builder smoke`: boot an image with a tiny model, check it, audit its kernels, report.

An image is known-good only if it booted, served, answered deterministically (sequentially and
under concurrency), reproduced the cell's golden outputs, kept its throughput, and (GPU cells)
carries kernels for its arch. The report goes to the registry beside the image; promotion reads it.
"""

from __future__ import annotations

import json
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import docker

from builder.engines import engine_module
from builder.errors import StepFailed
from builder.matrix.smoke_settings import SmokeSettings
from builder.names import SMOKE_LABEL
from builder.oci import dockerd
from builder.oci.container import Container
from builder.smoke.checks import (
    check_completions,
    check_determinism,
    check_golden,
    check_models,
    check_throughput,
    check_tool_call,
)
from builder.smoke.cuobjdump import audit_directory
from builder.smoke.model import resolve_model
from builder.smoke.openai import CheckResult, SmokeSpec
from builder.smoke.report import SmokeReport
from builder.smoke.server import ServerSpec, serve
from builder.util import utc_now


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


def kernel_audit(client: docker.DockerClient, image: str, engine: str, arch: str, gpu: bool,
                 optional: tuple[str, ...]) -> CheckResult:
    if not gpu:
        return CheckResult("kernels", "skip", "cpu cell: no CUDA kernels to audit", {})
    with tempfile.TemporaryDirectory(prefix="llm-factory-audit-") as tmp:
        module = engine_module(engine)
        packages = module.audit_packages
        if export_engine_packages(client, image, Path(tmp), packages, module.audit_roots) == 0:
            where = ", ".join((*packages, *module.audit_roots))
            return CheckResult("kernels", "fail", f"none of the engine's packages or directories ({where}) "
                                                  "is in the image", {})
        report = audit_directory(Path(tmp), arch, optional=optional, dispatch_only=module.audit_dispatch_only)
    return CheckResult("kernels", "pass" if report.ok else "fail", report.summary(), report.to_dict())


@dataclass(frozen=True, kw_only=True)
class SmokeInputs:
    cell_id: str
    engine: str
    arch: str
    gpu: bool
    image: str  # an image reference the Engine can run
    digest: str
    settings: SmokeSettings
    golden: dict[str, str] | None = None  # the cell's known-good outputs
    golden_model: str | None = None
    baseline_tps: float | None = None
    model_dir: Path | None = None
    pull_auth: dict | None = None  # credentials for pulling the image on a runner that lacks it
    helper_image: str | None = None  # makes the generated model when the image under test cannot (model_helper)
    baseline_measure: tuple | None = None  # (model id, throughput tokens) the baseline was measured with


def run_smoke(client: docker.DockerClient, inputs: SmokeInputs, progress=lambda message: None) -> SmokeReport:
    started = time.monotonic()
    settings = inputs.settings
    dockerd.ensure_image(client, inputs.image, inputs.pull_auth)
    model = resolve_model(settings, inputs.image, client, override=inputs.model_dir, helper_image=inputs.helper_image,
                          pull_auth=inputs.pull_auth)
    checks = [kernel_audit(client, inputs.image, inputs.engine, inputs.arch, inputs.gpu, settings.audit_optional)]
    spec = SmokeSpec.from_settings(settings, served_name="smoke", engine=inputs.engine)
    server_spec = ServerSpec(image=inputs.image, engine=inputs.engine, gpu=inputs.gpu, model_dir=model.directory,
                             served_name="smoke", model_file=model.file, args=settings.args, env=settings.env,
                             shm_size=settings.shm_size,
                             ready_timeout=settings.ready_timeout)
    outputs: dict[str, str] = {}
    tps = None
    progress(f"starting {inputs.image} with {model.model_id}")
    try:
        with serve(client, server_spec, f"smoke-{inputs.cell_id}") as server:
            ready = server.ready_seconds
            progress(f"ready after {ready:.0f}s; checking")
            checks.append(check_models(server.base_url, spec))
            checks.append(check_completions(server.base_url, spec))
            determinism, outputs = check_determinism(server.base_url, spec)
            checks.append(determinism)
            checks.append(check_golden(outputs, inputs.golden, model.model_id, inputs.golden_model))
            checks.append(check_tool_call(server.base_url, spec))
            throughput, tps = check_throughput(server.base_url, spec, comparable_baseline(inputs, model.model_id))
            checks.append(throughput)
    except StepFailed as exc:
        checks.append(CheckResult("boot", "fail", str(exc).splitlines()[0], {"log": str(exc)}))
        ready = 0.0
    return SmokeReport(cell=inputs.cell_id, image=inputs.image, digest=inputs.digest, model_id=model.model_id,
                       checks=tuple(checks), ready_seconds=ready, total_seconds=time.monotonic() - started,
                       throughput_tps=tps, golden=outputs if determinism_passed(checks) else {}, finished_at=utc_now(),
                       throughput_tokens=settings.throughput_tokens)


def comparable_baseline(inputs: SmokeInputs, model_id: str) -> float | None:
    """The baseline tok/s, unless it was measured with another model or token count (then the
    figures do not compare: this run becomes the new baseline once promoted)."""
    if inputs.baseline_measure is None:
        return inputs.baseline_tps
    return inputs.baseline_tps if inputs.baseline_measure == (model_id, inputs.settings.throughput_tokens) else None


def determinism_passed(checks: list[CheckResult]) -> bool:
    return any(c.name == "determinism" and c.status == "pass" for c in checks)

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
import uuid
from dataclasses import dataclass
from pathlib import Path

import docker

from builder.errors import StepFailed
from builder.matrix.smoke_settings import SmokeSettings
from builder.oci import dockerd
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
from builder.smoke.report import ENGINE_PACKAGES, SmokeReport
from builder.smoke.server import ServerSpec, serve
from builder.util import utc_now


def export_engine_packages(client: docker.DockerClient, image: str, target: Path,
                           packages: tuple[str, ...] = ENGINE_PACKAGES) -> int:
    """Copy the engine's Python packages out of an image (never started) for the kernel audit."""
    name = f"llm-factory-audit-{uuid.uuid4().hex[:12]}"
    copied = 0
    try:
        # Named, and removed by name on every way out (an interrupt may land inside run/create).
        container = client.containers.run(image, name=name, detach=True, entrypoint=[
            "python3", "-c", "import sysconfig, json; print(json.dumps("
            "sorted({sysconfig.get_paths()['purelib'], sysconfig.get_paths()['platlib']})))"])
        if container.wait(timeout=120).get("StatusCode") != 0:
            raise StepFailed(f"{image}: cannot locate its Python packages (python3 failed): "
                             f"{container.logs(tail=3).decode(errors='replace').strip()}")
        sites = json.loads(container.logs(stdout=True, stderr=False).decode().strip().splitlines()[-1])
        for site in sites:
            for package in packages:
                try:
                    stream, _ = container.get_archive(f"{site}/{package}")
                except docker.errors.NotFound:
                    continue
                with tempfile.TemporaryFile() as spool:
                    for chunk in stream:
                        spool.write(chunk)
                    spool.seek(0)
                    with tarfile.open(fileobj=spool) as tar:
                        tar.extractall(target, filter="data")
                copied += 1
    except docker.errors.DockerException as exc:
        raise StepFailed(f"kernel audit: cannot read {image}: {exc.__class__.__name__}: {exc}") from None
    finally:
        dockerd.remove_container(client, name)
    return copied


def kernel_audit(client: docker.DockerClient, image: str, arch: str, gpu: bool,
                 optional: tuple[str, ...]) -> CheckResult:
    if not gpu:
        return CheckResult("kernels", "skip", "cpu cell: no CUDA kernels to audit", {})
    with tempfile.TemporaryDirectory(prefix="llm-factory-audit-") as tmp:
        if export_engine_packages(client, image, Path(tmp)) == 0:
            return CheckResult("kernels", "fail", f"no engine package ({', '.join(ENGINE_PACKAGES)}) found in the image", {})
        report = audit_directory(Path(tmp), arch, optional=optional)
    return CheckResult("kernels", "pass" if report.ok else "fail", report.summary(), report.to_dict())


@dataclass(frozen=True)
class SmokeInputs:
    cell_id: str
    arch: str
    gpu: bool
    image: str  # an image reference the Engine can run
    digest: str
    settings: SmokeSettings
    golden: dict[str, str] | None = None  # the cell's known-good outputs
    golden_model: str | None = None
    baseline_tps: float | None = None
    threshold: float | None = None  # None: the matrix's regression_threshold
    model_dir: Path | None = None
    pull_auth: dict | None = None  # credentials for pulling the image on a runner that lacks it
    baseline_measure: tuple | None = None  # (model id, throughput tokens) the baseline was measured with


def run_smoke(client: docker.DockerClient, inputs: SmokeInputs, progress=lambda message: None) -> SmokeReport:
    started = time.monotonic()
    settings = inputs.settings
    dockerd.ensure_image(client, inputs.image, inputs.pull_auth)
    model = resolve_model(settings, inputs.image, client, override=inputs.model_dir)
    checks = [kernel_audit(client, inputs.image, inputs.arch, inputs.gpu, settings.audit_optional)]
    threshold = settings.regression_threshold if inputs.threshold is None else inputs.threshold
    spec = SmokeSpec(served_name="smoke", tools=settings.tools, tool_recipe=settings.tool_recipe,
                     throughput_tokens=settings.throughput_tokens, regression_threshold=threshold)
    server_spec = ServerSpec(inputs.image, inputs.gpu, model.directory, "smoke", settings.args, settings.env,
                             settings.shm_size, settings.ready_timeout)
    outputs: dict[str, str] = {}
    tps = None
    progress(f"starting {inputs.image} with {model.model_id}")
    name = f"llm-factory-smoke-{inputs.cell_id}-{uuid.uuid4().hex[:8]}"
    try:
        with serve(client, server_spec, name) as server:
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
    return SmokeReport(inputs.cell_id, inputs.image, inputs.digest, model.model_id, tuple(checks), ready,
                       time.monotonic() - started, tps, outputs if determinism_passed(checks) else {}, utc_now(),
                       settings.throughput_tokens)


def comparable_baseline(inputs: SmokeInputs, model_id: str) -> float | None:
    """The baseline tok/s, unless it was measured with another model or token count (then the
    figures do not compare: this run becomes the new baseline once promoted)."""
    if inputs.baseline_measure is None:
        return inputs.baseline_tps
    return inputs.baseline_tps if inputs.baseline_measure == (model_id, inputs.settings.throughput_tokens) else None


def determinism_passed(checks: list[CheckResult]) -> bool:
    return any(c.name == "determinism" and c.status == "pass" for c in checks)

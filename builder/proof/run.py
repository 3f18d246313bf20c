"""One image through the kernel audit, the smoke checks and the speed measurement, into a SmokeReport.

An image is known-good only if it booted, served, answered deterministically (sequentially and
under concurrency and under each serve profile), reproduced the cell's golden outputs, was not slower
than the cell's known-good image measured beside it (both containers resident, samples interleaved),
and (GPU cells) carries kernels for its arch. The report goes to the registry beside the image; promotion reads it.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import docker
from packaging.version import Version

from builder.audit.image import kernel_audit
from builder.checkresult import FAIL, PASS, SKIP, CheckResult, CheckStatus
from builder.engines import EngineModule
from builder.errors import StepFailed
from builder.matrix.smoke_settings import ServeProfile, SmokeSettings
from builder.measure.absession import InterleavedRun
from builder.measure.floor import Floor
from builder.measure.perf import check_gate, check_sweep, gate_levels, gate_settings, sweep_spec
from builder.measure.sweepreport import SweepResult
from builder.oci import dockerd
from builder.proof.profiles import STARTUP_LOG_LINES, profile_checks, profile_unavailable
from builder.proof.report import SmokeReport
from builder.smoke.checks import check_completions, check_determinism, check_golden, check_models, check_tool_call
from builder.smoke.model import SmokeModel, resolve_model
from builder.smoke.golden_scores import GoldenScore, check_golden_scores, generated_outputs, own_scores
from builder.smoke.openai import SmokeSpec
from builder.smoke.runtime import check_backends
from builder.smoke.server import RunningServer, ServerSpec, serve
from builder.util import utc_now


@dataclass(frozen=True, kw_only=True)
class SmokeInputs:
    cell_id: str
    engine: EngineModule
    arch: str
    gpu: bool
    image: str  # an image reference the Engine can run
    digest: str
    settings: SmokeSettings
    golden: dict[str, str] | None = None  # the cell's known-good outputs
    golden_model: str | None = None
    golden_profiles: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    known_good_image: str | None = None  # the cell's known-good image (by digest): the gate's baseline
    known_good_sweep: SweepResult | None = None  # its recorded sweep: context, never the verdict
    accept_inconclusive: bool = False
    floor: Floor | None = None  # this runner's gate floor (--floor): the gate's evidence names it
    model_dir: Path | None = None
    pull_auth: dict | None = None  # credentials for pulling the image on a runner that lacks it
    helper_image: str | None = None  # makes the generated model when the image under test cannot (model_helper)
    engine_version: Version | None = None  # for profiles gated on engine versions (None: every profile runs)
    golden_scores: dict[str, GoldenScore] = dataclasses.field(default_factory=dict)  # the known-good's, with its scores


def run_smoke(client: docker.DockerClient, inputs: SmokeInputs, progress=lambda message: None) -> SmokeReport:
    started = time.monotonic()
    settings = inputs.settings
    dockerd.ensure_image(client, inputs.image, inputs.pull_auth)
    model = resolve_model(settings, inputs.image, client, engine=inputs.engine, override=inputs.model_dir, gpu=inputs.gpu,
                          helper_image=inputs.helper_image, pull_auth=inputs.pull_auth)
    checks = [kernel_audit(client, inputs.image, inputs.engine, inputs.arch, inputs.gpu, settings.audit_optional)]
    spec = SmokeSpec.from_settings(settings, served_name="smoke", engine=inputs.engine)
    outputs: dict[str, str] = {}
    golden_profiles: dict[str, dict[str, str]] = {}
    sweep: SweepResult | None = None
    gate: InterleavedRun | None = None
    perf_model = _perf_model(inputs, client)  # None: the sweep and the gate serve the smoke model
    progress(f"starting {inputs.image} with {model.model_id}")
    try:
        with serve(client, server_spec(inputs, model, image=inputs.image), f"smoke-{inputs.cell_id}") as server:
            ready = server.ready_seconds
            progress(f"ready after {ready:.0f}s; checking")
            checks.append(check_backends(server.logs(STARTUP_LOG_LINES), inputs.engine, settings.expected_backends))
            checks.append(check_models(server.base_url, spec))
            checks.append(check_completions(server.base_url, spec))
            determinism, outputs = check_determinism(server.base_url, spec)
            checks.append(determinism)
            checks.append(check_golden(outputs, inputs.golden, model.model_id, inputs.golden_model,
                                       exact=spec.consistency == "exact"))
            checks.append(golden_scores_check(server.base_url, spec, inputs, model.model_id))
            scores = own_scores(server.base_url, spec, generated_outputs(determinism))
            checks.append(check_tool_call(server.base_url, spec))
            if perf_model is None:
                sweep, gate, perf_checks = _performance(client, inputs, model, server, progress)
                checks += perf_checks
        if perf_model is not None:
            progress(f"sweep and gate: starting {inputs.image} with {perf_model.model_id}")
            with serve(client, server_spec(inputs, perf_model, image=inputs.image),
                       f"smoke-{inputs.cell_id}-perf") as server:
                sweep, gate, perf_checks = _performance(client, inputs, perf_model, server, progress)
                checks += perf_checks
        for profile in settings.profiles:
            profile_checks, profile_outputs = _profile(client, inputs, model, spec, profile, progress)
            checks += profile_checks
            if profile_outputs:
                golden_profiles[profile.name] = profile_outputs
    except StepFailed as exc:
        checks.append(CheckResult("boot", "fail", str(exc).splitlines()[0], {"log": str(exc)}))
        ready, scores = 0.0, {}
    c1 = sweep.levels[0].tps_p50 if sweep and sweep.levels else None
    return SmokeReport(cell=inputs.cell_id, image=inputs.image, digest=inputs.digest, model_id=model.model_id,
                       checks=tuple(checks), ready_seconds=ready, total_seconds=time.monotonic() - started,
                       throughput_tps=round(c1, 1) if c1 else None,
                       golden=outputs if determinism_passed(checks) else {}, finished_at=utc_now(),
                       throughput_tokens=settings.sweep.tokens, sweep=sweep, gate=gate.gate if gate else None,
                       golden_profiles=golden_profiles, sweep_model_id=perf_model.model_id if perf_model else "",
                       golden_scores=scores if determinism_passed(checks) else {})


def golden_scores_check(base_url: str, spec: SmokeSpec, inputs: SmokeInputs, model_id: str) -> CheckResult:
    """The known-good's goldens scored by this image, when they were recorded with the same model."""
    if inputs.golden_scores and inputs.golden_model not in (None, model_id):
        return CheckResult("golden_scores", SKIP, f"golden scores were recorded for {inputs.golden_model}, not {model_id}",
                           {})
    return check_golden_scores(base_url, spec, inputs.golden_scores, inputs.settings.golden_nats)


def _perf_model(inputs: SmokeInputs, client: docker.DockerClient) -> SmokeModel | None:
    sweep = inputs.settings.sweep
    if not sweep.model or sweep.model == inputs.settings.model or inputs.model_dir is not None:
        return None
    return resolve_model(dataclasses.replace(inputs.settings, model=sweep.model, revision=sweep.revision),
                         inputs.image, client, engine=inputs.engine, gpu=inputs.gpu,
                         helper_image=inputs.helper_image, pull_auth=inputs.pull_auth)


def _performance(client: docker.DockerClient, inputs: SmokeInputs, model: SmokeModel, server: RunningServer,
                 progress) -> tuple[SweepResult | None, InterleavedRun | None, list[CheckResult]]:
    """The sweep of the candidate, then the gate against the known-good booted beside it (same model)."""
    progress("sweep")
    sweep_check, sweep = check_sweep(server.base_url, sweep_spec(inputs.settings, "smoke", inputs.engine))
    gate_check, gate = _gate(client, inputs, model, server, progress)
    return sweep, gate, [sweep_check, gate_check]


def server_spec(inputs: SmokeInputs, model: SmokeModel, *, image: str,
                profile: ServeProfile | None = None) -> ServerSpec:
    settings = inputs.settings
    args = settings.args + (profile.args if profile else ())
    env = {**settings.env, **(profile.env if profile else {})}
    return ServerSpec(image=image, engine=inputs.engine, gpu=inputs.gpu, model_dir=model.directory,
                      served_name="smoke", model_file=model.file, args=args, env=env, shm_size=settings.shm_size,
                      ready_timeout=settings.ready_timeout)


def _gate(client: docker.DockerClient, inputs: SmokeInputs, model: SmokeModel, candidate: RunningServer,
          progress) -> tuple[CheckResult, InterleavedRun | None]:
    """Boot the known-good image beside the candidate (both resident) and interleave their samples."""
    settings = inputs.settings
    spec = sweep_spec(settings, "smoke", inputs.engine, concurrency=gate_levels(settings))
    if inputs.known_good_image is None:
        return check_gate(None, candidate.base_url, spec, gate_settings(settings), recorded=inputs.known_good_sweep)
    progress(f"gate: starting the known-good {inputs.known_good_image} beside it")
    try:
        dockerd.ensure_image(client, inputs.known_good_image, inputs.pull_auth)
        with serve(client, server_spec(inputs, model, image=inputs.known_good_image),
                   f"smoke-{inputs.cell_id}-known-good") as known_good:
            progress(f"gate: known-good ready after {known_good.ready_seconds:.0f}s; interleaving samples")
            return check_gate(known_good.base_url, candidate.base_url, spec, gate_settings(settings),
                              accept_inconclusive=inputs.accept_inconclusive, known_good=inputs.known_good_image,
                              recorded=inputs.known_good_sweep, floor=inputs.floor,
                              on_pair=lambda c, i, a, b: progress(f"gate c={c} pair {i + 1}: known-good {a:.1f}, "
                                                                  f"candidate {b:.1f} tok/s"))
    except StepFailed as exc:  # the baseline could not run: nothing was compared
        why = str(exc).splitlines()[0]
        status: CheckStatus = PASS if inputs.accept_inconclusive else FAIL
        return CheckResult("gate", status, f"inconclusive: the known-good image did not serve beside the "
                           f"candidate ({why})", {"verdict": "inconclusive", "error": str(exc)}), None


def _profile(client: docker.DockerClient, inputs: SmokeInputs, model: SmokeModel, spec: SmokeSpec,
             profile: ServeProfile, progress) -> tuple[list[CheckResult], dict[str, str]]:
    """Determinism (sequential and concurrent), golden, and what the server ran, under one more way to serve."""
    name = f"[{profile.name}]"
    unavailable = profile_unavailable(profile, inputs.engine, inputs.engine_version)
    if unavailable:
        return [CheckResult("determinism" + name, SKIP, unavailable, {})], {}
    progress(f"profile {profile.name}: starting with {' '.join(profile.args) or 'no extra args'}")
    try:
        with serve(client, server_spec(inputs, model, image=inputs.image, profile=profile),
                   f"smoke-{inputs.cell_id}-{profile.name}") as server:
            checks, outputs = profile_checks(server.base_url, spec, profile,
                                             server.logs(STARTUP_LOG_LINES), inputs.settings.expected_backends)
    except StepFailed as exc:
        return [CheckResult("boot" + name, "fail", str(exc).splitlines()[0], {"log": str(exc)})], {}
    golden = check_golden(outputs, inputs.golden_profiles.get(profile.name), model.model_id, inputs.golden_model,
                          exact=(profile.consistency or spec.consistency) == "exact")
    checks.append(dataclasses.replace(golden, name="golden" + name))
    return checks, outputs if checks[0].status == "pass" else {}


def determinism_passed(checks: list[CheckResult]) -> bool:
    return any(c.name == "determinism" and c.status == "pass" for c in checks)

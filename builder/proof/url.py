"""`builder smoke --url URL`: the checks, the sweep and (with a second URL) the A/B gate against servers
that are already running (a user's deployment, a process on a machine without Docker). No Docker, no
registry: nothing is started, stored or promoted; the report is printed.
"""

from __future__ import annotations

import dataclasses
import time
import urllib.parse

from builder.checkresult import FAIL, SKIP, CheckResult
from builder.engines import EngineModule
from builder.errors import InputError, ServiceError
from builder.matrix.smoke_settings import ServeProfile, SmokeSettings
from builder.measure.floor import Floor
from builder.measure.perf import check_gate, check_sweep, gate_levels, gate_settings, sweep_spec
from builder.proof.profiles import profile_checks
from builder.proof.report import SmokeReport
from builder.smoke.checks import check_completions, check_determinism, check_golden, check_models, check_tool_call
from builder.smoke.openai import ServerError, SmokeSpec, request_json
from builder.smoke.golden_scores import check_golden_scores, generated_outputs, own_scores
from builder.smoke.runtime import check_backends
from builder.safetext import redact, shown
from builder.util import utc_now

MAX_MODELS = 1000  # entries of a /v1/models list


def check_url(url: str, option: str) -> str:
    """The server's base URL, or exit 2 naming the option (before anything is contacted). Credentials
    in it (user:password@) are used, never shown: every message names redact(url)."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 (a bad port raises here)
    except ValueError as exc:
        raise InputError(f"{option}: {shown(url)!r} is not a usable URL ({exc}); e.g. http://127.0.0.1:8000") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise InputError(f"{option}: {shown(url)!r} is not a server's base URL (e.g. http://127.0.0.1:8000)")
    if not url.isprintable() or any(c.isspace() for c in url):
        raise InputError(f"{option}: {shown(url)!r} holds control characters or spaces")
    return url.rstrip("/").removesuffix("/v1")


def served_models(url: str, timeout: float = 10.0) -> list[str]:
    """The served model names; ServiceError (exit 3) when the server cannot be reached or does not answer
    within `timeout` s, or answers something that is not an OpenAI model list."""
    try:
        data = request_json(url, "/v1/models", timeout)
        entries = data["data"]
        if not isinstance(entries, list) or len(entries) > MAX_MODELS:
            raise TypeError("data is not a list of models")
        models = [m["id"] for m in entries]
    except ServerError as exc:
        raise ServiceError(f"{redact(url)} is unreachable: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise ServiceError(f"{redact(url)}/v1/models is not an OpenAI model list ({type(exc).__name__})") from None
    bad = next((m for m in models if not isinstance(m, str) or not m or len(m) > 512), None)
    if bad is not None:
        raise ServiceError(f"{redact(url)}/v1/models lists a model id that is not a name: {shown(repr(bad))[:80]}")
    return models


def pick_served_name(url: str, served_name: str | None) -> str:
    models = served_models(url)
    if served_name is not None:
        return served_name  # the models check says whether it is served
    if len(models) != 1:
        raise InputError(f"{redact(url)} serves {len(models)} models ({shown(', '.join(models[:10])) or 'none'}): name one with "
                         "--served-name")
    return models[0]


def smoke_url(url: str, settings: SmokeSettings, engine: EngineModule, *, served_name: str | None = None,
              known_good_url: str | None = None, accept_inconclusive: bool = False,
              profile: ServeProfile | None = None, server_log: str | None = None,
              golden: SmokeReport | None = None, floor: Floor | None = None,
              progress=lambda message: None) -> SmokeReport:
    """`profile`: the server runs that serve profile of the cell (its consistency, its speculation counters);
    `server_log`: the server's start-up log, for the backends it chose; `golden`: a known-good server's report,
    whose golden outputs and golden scores this server must reproduce."""
    started = time.monotonic()
    url = check_url(url, "--url")
    known_good_url = check_url(known_good_url, "--known-good-url") if known_good_url else None
    name = pick_served_name(url, served_name)
    if known_good_url:
        served_models(known_good_url)  # unreachable: exit 3 before anything is measured
    spec = SmokeSpec.from_settings(settings, served_name=name, engine=engine)
    checks: list[CheckResult] = []

    def stopped() -> SmokeReport:
        return SmokeReport(cell="(url)", image=redact(url), digest="", model_id=name, checks=tuple(checks),
                           ready_seconds=0.0, total_seconds=time.monotonic() - started, throughput_tps=None,
                           finished_at=utc_now())

    for check in (check_models, check_completions):
        checks.append(check(url, spec))
        if stalled(checks):
            return stopped()
    if profile is None:
        determinism, outputs = check_determinism(url, spec)
        checks += [determinism, check_backends(server_log, engine, settings.expected_backends)]
    else:
        profile_results, outputs = profile_checks(url, spec, profile, server_log, settings.expected_backends)
        checks += profile_results
        determinism = profile_results[0]
    if stalled(checks):
        return stopped()
    if golden is not None:
        consistency = (profile.consistency if profile else None) or spec.consistency
        judged = dataclasses.replace(spec, consistency=consistency)
        checks.append(check_golden(outputs, golden.golden, name, golden.model_id, exact=consistency == "exact"))
        checks.append(check_golden_scores(url, judged, golden.golden_scores, settings.golden_nats))
    passed = determinism.status == "pass"
    scores = own_scores(url, spec, generated_outputs(determinism)) if passed and profile is None else {}
    if profile is None:
        checks.append(check_tool_call(url, spec))
    else:  # as in the container path, a profile's server answers the consistency checks only
        checks.append(CheckResult("tool_call", SKIP, f"not run under profile {profile.name} (the default server "
                                  "checks tool calls; speculative decoding refuses the forced recipe's logit_bias)", {}))
    progress("sweep")
    sweep_check, sweep = check_sweep(url, sweep_spec(settings, name, engine))
    checks.append(sweep_check)
    gate = None
    if known_good_url:
        progress(f"gate: {url} against the known-good {known_good_url}, samples interleaved")
        gate_check, run = check_gate(
            known_good_url, url, sweep_spec(settings, name, engine, concurrency=gate_levels(settings)),
            gate_settings(settings), accept_inconclusive=accept_inconclusive, known_good=known_good_url, floor=floor,
            on_pair=lambda c, i, a, b: progress(f"gate c={c} pair {i + 1}: known-good {a:.1f}, candidate {b:.1f}"))
        checks.append(gate_check)
        gate = run.gate if run else None
    else:
        checks.append(check_gate(None, url, sweep_spec(settings, name, engine), gate_settings(settings))[0])
    c1 = sweep.levels[0].tps_p50 if sweep and sweep.levels else None
    return SmokeReport(cell="(url)", image=redact(url), digest="", model_id=name, checks=tuple(checks), ready_seconds=0.0,
                       total_seconds=time.monotonic() - started, throughput_tps=round(c1, 1) if c1 else None,
                       golden=outputs if passed else {}, finished_at=utc_now(),
                       throughput_tokens=settings.sweep.tokens, sweep=sweep, gate=gate, golden_scores=scores)


STALL = ": no answer within "  # the evidence of a request that met its deadline (smoke/openai.py)


def stalled(checks: list[CheckResult]) -> bool:
    """A server that stopped answering fails the run at once: each further check would wait out its own deadline
    (about 10 minutes in all). Appends the check that says so."""
    late = next((c for c in checks if c.status == FAIL and STALL in c.evidence), None)
    if late is None or checks[-1].name == "stalled":
        return late is not None
    checks.append(CheckResult("stalled", FAIL, f"the server stopped answering ({late.name}: "
                              f"{late.evidence[late.evidence.index(STALL) + 2:]}); the remaining checks were not run",
                              {"check": late.name}))
    return True

"""Serve profiles (speculative decoding, batch-invariant, eager, ...): which engine versions a profile can run on,
and the checks of a server running one: determinism under the profile's consistency, the backends it chose, and
for a speculative profile the drafts it accepted. No Docker here: `builder smoke --url --profile` uses it on
machines without the Docker SDK.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from packaging.version import Version

from builder.checkresult import CheckResult
from builder.engines import BackendKind, EngineModule
from builder.matrix.smoke_settings import ServeProfile
from builder.smoke.checks import check_determinism
from builder.smoke.openai import SmokeSpec
from builder.smoke.runtime import check_backends, check_speculation, read_metrics

STARTUP_LOG_LINES = 5000  # the server's log since start: its backend choices are in the first few hundred lines


def profile_unavailable(profile: ServeProfile, engine: EngineModule, version: Version | None) -> str | None:
    """Why a profile cannot run on this engine version (it names versions that have what it needs)."""
    if profile.versions is None or version is None or profile.versions.contains(version, prereleases=True):
        return None
    return f"not available in {engine.name} {version}: the profile needs {engine.name} {profile.versions}"


def profile_checks(base_url: str, spec: SmokeSpec, profile: ServeProfile, log: str | None,
                   expected_backends: Mapping[BackendKind, str]) -> tuple[list[CheckResult], dict[str, str]]:
    """The checks of one profile's running server (also `builder smoke --url --profile`): determinism under the
    profile's consistency, the backends it chose, and for a speculative profile the drafts it accepted."""
    name = f"[{profile.name}]"
    if profile.consistency is not None:
        spec = dataclasses.replace(spec, consistency=profile.consistency)
    before = spec.engine.speculation(read_metrics(base_url) or "") if profile.speculative else None
    determinism, outputs = check_determinism(base_url, spec)
    checks = [dataclasses.replace(determinism, name="determinism" + name),
              check_backends(log, spec.engine, expected_backends, name="backends" + name)]
    if profile.speculative:
        after = spec.engine.speculation(read_metrics(base_url) or "")
        checks.append(check_speculation(before, after, spec.engine, "speculation" + name))
    return checks, outputs

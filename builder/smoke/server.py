"""Running an engine image for a smoke test, and always cleaning it up (Docker SDK).

`run_options` is pure (unit-tested: no GPU here): a GPU DeviceRequest (the `--gpus all`
equivalent; never the `nvidia` runtime name, which fails where the runtime is not registered),
shared memory, the model mounted read-only, the port published on 127.0.0.1 only.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import docker
import requests
from docker.types import DeviceRequest

from builder.errors import StepFailed
from builder.names import SMOKE_LABEL
from builder.oci import dockerd

CONTAINER_PORT = 8000
_HTTP = requests.Session()
_HTTP.trust_env = False  # loopback traffic must not go through a proxy from the environment
MODEL_MOUNT = "/model"


@dataclass(frozen=True)
class ServerSpec:
    image: str
    gpu: bool
    model_dir: Path
    served_name: str
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    shm_size: str = "2g"
    ready_timeout: int = 600


def server_args(spec: ServerSpec) -> list[str]:
    """Arguments after the image's entrypoint (python3 -m vllm.entrypoints.openai.api_server)."""
    return ["--model", MODEL_MOUNT, "--served-model-name", spec.served_name, "--host", "0.0.0.0",
            "--port", str(CONTAINER_PORT), *spec.args]


def run_options(spec: ServerSpec, name: str) -> dict:
    options = {
        "image": spec.image,
        "command": server_args(spec),
        "name": name,
        "detach": True,
        "shm_size": spec.shm_size,
        "ports": {f"{CONTAINER_PORT}/tcp": ("127.0.0.1", None)},  # a free host port, loopback only
        "volumes": {str(spec.model_dir): {"bind": MODEL_MOUNT, "mode": "ro"}},
        "environment": {"HF_HUB_OFFLINE": "1", **spec.env},
        "labels": {SMOKE_LABEL: "1"},
    }
    if spec.gpu:
        options["device_requests"] = [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    return options


def _logs(container, lines: int = 30) -> str:
    try:
        return container.logs(tail=lines).decode(errors="replace").rstrip()
    except docker.errors.APIError:
        return "(logs unavailable)"


@dataclass
class RunningServer:
    container: object
    base_url: str
    ready_seconds: float = 0.0

    def logs(self, lines: int = 30) -> str:
        return _logs(self.container, lines)


@contextmanager
def serve(client: docker.DockerClient, spec: ServerSpec, name: str) -> Iterator[RunningServer]:
    """Start the server, wait until /health answers, yield it; the container is removed on every
    way out (success, failure, Ctrl-C)."""
    try:
        try:
            container = client.containers.run(**run_options(spec, name))
        except docker.errors.APIError as exc:
            raise StepFailed(f"cannot start {spec.image}: {exc.explanation or exc}") from None
        started = time.monotonic()
        container.reload()
        bindings = (container.attrs["NetworkSettings"].get("Ports") or {}).get(f"{CONTAINER_PORT}/tcp") or []
        if not bindings:  # it already exited: no port was ever published
            code = container.attrs["State"].get("ExitCode")
            raise StepFailed(f"{spec.image} exited with code {code} before it was ready; last lines:\n"
                             f"{_logs(container)}")
        server = RunningServer(container, f"http://127.0.0.1:{bindings[0]['HostPort']}")
        _wait_ready(server, spec, started)
        server.ready_seconds = time.monotonic() - started
        yield server
    finally:
        dockerd.remove_container(client, name)


def _wait_ready(server: RunningServer, spec: ServerSpec, started: float) -> None:
    deadline = started + spec.ready_timeout
    while time.monotonic() < deadline:
        server.container.reload()
        if server.container.status in ("exited", "dead"):
            code = server.container.attrs["State"].get("ExitCode")
            raise StepFailed(f"{spec.image} exited with code {code} before it was ready; last lines:\n"
                             f"{server.logs()}")
        try:
            if _HTTP.get(f"{server.base_url}/health", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    raise StepFailed(f"{spec.image} was not ready within {spec.ready_timeout}s (no 200 from /health); "
                     f"last lines:\n{server.logs()}")

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

from builder.engines import EngineModule
from builder.errors import StepFailed
from builder.names import SMOKE_LABEL
from builder.net import client as net
from builder.net.client import Limits
from builder.oci.container import Container

_HTTP = net.session()  # loopback traffic must not go through a proxy from the environment
_HEALTH = Limits(connect_s=5.0, read_s=5.0, total_s=5.0, max_body=1 << 20)  # one readiness probe
MODEL_MOUNT = "/model"


MODEL_PLACEHOLDER = "{model}"


@dataclass(frozen=True, kw_only=True)
class ServerSpec:
    image: str
    engine: EngineModule  # knows the server's command line, port and health path
    gpu: bool
    model_dir: Path
    served_name: str
    model_file: str | None = None  # a GGUF model: the file in model_dir the server loads
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    shm_size: str = "2g"
    ready_timeout: int = 600


def server_args(spec: ServerSpec) -> list[str]:
    """Arguments after the image's entrypoint, as the cell's engine module writes them."""
    engine = spec.engine
    model = f"{MODEL_MOUNT}/{spec.model_file}" if spec.model_file else MODEL_MOUNT
    # "{model}" in an argument is the served model's path (a speculative profile's draft model is the model itself)
    return engine.server_args(model=model, served_name=spec.served_name, port=engine.container_port,
                              extra=[arg.replace(MODEL_PLACEHOLDER, model) for arg in spec.args])


def run_options(spec: ServerSpec) -> dict:
    """How the container runs (its name, detach and removal belong to oci.container.Container)."""
    port = spec.engine.container_port
    options = {
        "image": spec.image,
        "command": server_args(spec),
        "shm_size": spec.shm_size,
        "ports": {f"{port}/tcp": ("127.0.0.1", None)},  # a free host port, loopback only
        "volumes": {str(spec.model_dir): {"bind": MODEL_MOUNT, "mode": "ro"}},
        "environment": {"HF_HUB_OFFLINE": "1", **spec.env},
        "labels": {SMOKE_LABEL: "1"},
    }
    if spec.gpu:
        options["device_requests"] = [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    return options


@dataclass
class RunningServer:
    container: Container
    base_url: str
    ready_seconds: float = 0.0

    def logs(self, lines: int = 30) -> str:
        return self.container.logs(lines)


@contextmanager
def serve(client: docker.DockerClient, spec: ServerSpec, purpose: str) -> Iterator[RunningServer]:
    """Start the server, wait until its health path answers, yield it; the container is removed on
    every way out (success, failure, Ctrl-C)."""
    with Container(client, purpose, **run_options(spec)) as box:
        started = time.monotonic()
        box.reload()
        port = spec.engine.container_port
        bindings = (box.attrs["NetworkSettings"].get("Ports") or {}).get(f"{port}/tcp") or []
        if not bindings:  # it already exited: no port was ever published
            code = box.attrs["State"].get("ExitCode")
            raise StepFailed(f"{spec.image} exited with code {code} before it was ready; last lines:\n{box.logs()}")
        server = RunningServer(box, f"http://127.0.0.1:{bindings[0]['HostPort']}")
        _wait_ready(server, spec, started)
        server.ready_seconds = time.monotonic() - started
        yield server


def _wait_ready(server: RunningServer, spec: ServerSpec, started: float) -> None:
    deadline = started + spec.ready_timeout
    health = spec.engine.health_path
    while time.monotonic() < deadline:
        server.container.reload()
        if server.container.status in ("exited", "dead"):
            code = server.container.attrs["State"].get("ExitCode")
            raise StepFailed(f"{spec.image} exited with code {code} before it was ready; last lines:\n"
                             f"{server.logs()}")
        try:
            if net.send(_HTTP, "GET", f"{server.base_url}{health}", limits=_HEALTH).status_code == 200:
                return
        except (requests.RequestException, ValueError):
            pass
        time.sleep(1)
    raise StepFailed(f"{spec.image} was not ready within {spec.ready_timeout}s (no 200 from {spec.engine.health_path}); "
                     f"last lines:\n{server.logs()}")

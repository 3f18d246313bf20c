"""One owner for a container's lifecycle: a unique name, start, wait, logs, and removal by name on
every way out (success, failure, Ctrl-C, SIGTERM). By name, not by object: a signal can land after
the Engine created the container but before the SDK call returned it.

    with Container(client, "smoke-" + cell_id, image=..., command=[...]) as box:
        box.reload(); print(box.logs())

BUILDER_KEEP_CONTAINERS=1 leaves them for debugging (as cibuildwheel's CIBW_DEBUG_KEEP_CONTAINER).
"""

from __future__ import annotations

import os
import uuid
from types import TracebackType
from typing import Any

import docker
import requests

from builder.errors import StepFailed
from builder.oci import dockerd


class Container:
    def __init__(self, client: docker.DockerClient, purpose: str, **run_options: Any):
        self.client = client
        self.name = f"llm-factory-{purpose}-{uuid.uuid4().hex[:12]}"
        self.image = str(run_options.get("image", "?"))
        self._options = run_options
        self.handle: Any = None

    def __enter__(self) -> Container:
        try:
            self.handle = self.client.containers.run(name=self.name, detach=True, **self._options)
        except BaseException as exc:  # the Engine may have created it before the call broke off
            self._remove()
            if isinstance(exc, (docker.errors.DockerException, requests.RequestException)):
                detail = getattr(exc, "explanation", None) or exc
                raise StepFailed(f"cannot start {self.image}: {detail}") from None
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if not os.environ.get("BUILDER_KEEP_CONTAINERS"):
            self._remove()

    def _remove(self) -> None:
        try:
            dockerd.remove_container(self.client, self.name)
        except (docker.errors.DockerException, requests.RequestException):
            pass  # the Engine is gone; nothing left to remove through it

    def reload(self) -> None:
        self.handle.reload()

    @property
    def status(self) -> str:
        return self.handle.status

    @property
    def attrs(self) -> dict:
        return self.handle.attrs

    def wait(self, timeout: float) -> int:
        """The exit code; StepFailed when it does not exit within `timeout` seconds."""
        try:
            return int(self.handle.wait(timeout=timeout).get("StatusCode", -1))
        except requests.exceptions.ReadTimeout:
            raise StepFailed(f"{self.image}: container {self.name} did not finish within {timeout:.0f}s") from None

    def logs(self, lines: int = 30, stderr: bool = True) -> str:
        try:
            return self.handle.logs(tail=lines, stdout=True, stderr=stderr).decode(errors="replace").rstrip()
        except docker.errors.APIError:
            return "(logs unavailable)"

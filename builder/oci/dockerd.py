"""The Docker Engine through its API (docker SDK): inspect, pull, push. Side effects only.

Builds go through the docker CLI (BuildKit needs it: the Engine API's build endpoint is the
legacy builder); everything else the Engine API does well is done here.
"""

from __future__ import annotations

from dataclasses import dataclass

import docker
import requests
import urllib3
from docker.errors import APIError, DockerException, ImageNotFound, NotFound

from builder.errors import ServiceError, StepFailed


def connect() -> docker.DockerClient:
    try:
        client = docker.from_env(timeout=120)
        client.ping()
        return client
    except DockerException as exc:
        raise ServiceError(f"Docker Engine unreachable ({exc.__class__.__name__}): start dockerd, or set "
                           "DOCKER_HOST; scripts/test.sh shows how it is started here") from None


@dataclass(frozen=True)
class LocalImage:
    id: str  # the config's sha256: what identifies an image that no registry has seen
    repo_digests: tuple[str, ...]  # name@sha256:..., only after a push or a pull
    layers: tuple[str, ...]  # RootFS diff ids, bottom first


def inspect_image(client: docker.DockerClient, reference: str) -> LocalImage | None:
    """The Engine's copy of an image (name:tag, name@digest or an id); None when it has none."""
    try:
        attrs = client.images.get(reference).attrs
    except ImageNotFound:
        return None
    except APIError as exc:
        raise ServiceError(f"Docker Engine error inspecting {reference}: {_first_line(exc)}") from None
    return LocalImage(attrs["Id"], tuple(attrs.get("RepoDigests") or ()),
                      tuple((attrs.get("RootFS") or {}).get("Layers") or ()))


def ensure_base(client: docker.DockerClient, reference: str, auth: dict | None = None) -> LocalImage:
    """The base image in the local store, pulled (with credentials for our own registry) when
    missing; `reference` is a FROM line's text (name:tag, or name[:tag]@digest)."""
    found = inspect_image(client, reference)
    if found is not None:
        return found
    try:
        client.images.pull(reference, auth_config=auth)
    except (APIError, NotFound) as exc:
        raise StepFailed(f"base image {reference} is not in the local Docker store and cannot be pulled "
                         f"({_first_line(exc)}); on machines without a public registry make it with "
                         f"`builder base create --tag {reference}`") from None
    return inspect_image(client, reference) or LocalImage("", (), ())


def push(client: docker.DockerClient, reference: str, auth: dict | None, on_line=lambda line: None) -> str:
    """Push an image; returns the manifest digest the registry reported."""
    repository, tag = reference.rsplit(":", 1)
    digest = None
    try:
        for event in client.api.push(repository, tag=tag, stream=True, decode=True, auth_config=auth):
            if "error" in event:
                raise StepFailed(f"push of {reference} failed: {event['error']}")
            aux = event.get("aux") or {}
            if aux.get("Digest"):
                digest = aux["Digest"]
            status = event.get("status")
            if status and not event.get("progressDetail"):
                on_line(f"{event.get('id', '')} {status}".strip())
    except APIError as exc:
        raise ServiceError(f"push of {reference} failed: {_first_line(exc)}") from None
    except (requests.RequestException, urllib3.exceptions.HTTPError, ConnectionError) as exc:
        raise ServiceError(f"push of {reference}: the connection to the Docker Engine broke "
                           f"({exc.__class__.__name__}); is dockerd still running?") from None
    if not digest:
        raise StepFailed(f"push of {reference} reported no digest")
    return digest


def image_id(client: docker.DockerClient, reference: str) -> str | None:
    try:
        return client.images.get(reference).id
    except ImageNotFound:
        return None


def _first_line(exc: Exception) -> str:
    text = getattr(exc, "explanation", None) or str(exc)
    return str(text).strip().splitlines()[0] if str(text).strip() else exc.__class__.__name__


def ensure_image(client: docker.DockerClient, reference: str, auth: dict | None = None) -> None:
    """Pull an image the Engine does not have yet (a smoke test may run on another runner)."""
    if image_id(client, reference) is not None:
        return
    try:
        client.images.pull(reference, auth_config=auth)
    except (APIError, NotFound) as exc:
        raise StepFailed(f"cannot pull {reference}: {_first_line(exc)}") from None


def remove_container(client: docker.DockerClient, name: str) -> None:
    """Remove a container by name if it exists. By name, not by object: a signal can land after
    the Engine created the container but before the SDK call returned it."""
    try:
        client.containers.get(name).remove(force=True)
    except NotFound:
        pass

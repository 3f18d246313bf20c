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
class BaseImage:
    reference: str
    digest: str  # repo digest when the image came from a registry, else the local image id


def resolve_base(client: docker.DockerClient, reference: str, auth: dict | None = None) -> BaseImage:
    """The base image's digest (pulled when missing locally). A base made locally (debootstrap +
    docker import) has no repo digest; its image id stands in."""
    try:
        image = client.images.get(reference)
    except ImageNotFound:
        try:
            image = client.images.pull(reference, auth_config=auth)
        except (APIError, NotFound) as exc:
            raise StepFailed(f"base image {reference} is not in the local Docker store and cannot be pulled "
                             f"({_first_line(exc)}); on machines without a public registry make it with "
                             f"`builder base create --tag {reference}`") from None
    except APIError as exc:
        raise ServiceError(f"Docker Engine error inspecting {reference}: {_first_line(exc)}") from None
    digests = image.attrs.get("RepoDigests") or []
    return BaseImage(reference, digests[0].split("@", 1)[1] if digests else image.id)


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

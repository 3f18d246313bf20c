"""Resolving base references: the lock, then the local Engine, then the registry. Side effects.

A build asks `choice(reference)` once per distinct base per command (cached, thread-safe: cells
render in parallel with --jobs). `lookup(reference)` is what upstream says now, for `builder
bases lock` and `--check`. A base pinned in the matrix (`ref@sha256:...`) needs no lookup.

Local-only: the Engine has the image and no RepoDigest under the reference's own repository
(`docker import` and local builds have none; a push or pull adds one for that name only).
Its identity is the image id, which `docker import` changes on every re-creation.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from builder.bases.choice import BaseChoice, choose
from builder.bases.lock import LOCAL, LockEntry, load_lock
from builder.errors import InputError, ServiceError, StepFailed
from builder.matrix.model import BaseSettings
from builder.oci import dockerd
from builder.oci.credentials import docker_config_credentials
from builder.oci.reference import parse_reference
from builder.oci.registry import RegistryClient


class BaseResolver:
    def __init__(self, settings: BaseSettings, own_registry: str, docker: Callable[[], object],
                 registry: Callable[[str], RegistryClient] | None = None, use_lock: bool = True):
        self.settings = settings
        self.lock: dict[str, LockEntry] = load_lock(settings.lock) if use_lock else {}
        self._docker_factory, self._docker = docker, None
        self._own_registry, self._registry_factory = own_registry, registry or self._default_client
        self._clients: dict[str, RegistryClient] = {}
        self._choices: dict[str, BaseChoice] = {}
        self._mutex = threading.Lock()

    @property
    def docker(self):
        if self._docker is None:
            self._docker = self._docker_factory()
        return self._docker

    def client(self, host: str) -> RegistryClient:
        if host not in self._clients:
            self._clients[host] = self._registry_factory(host)
        return self._clients[host]

    def _default_client(self, host: str) -> RegistryClient:
        """Our own registry with the builder's credentials; any other with what `docker login`
        stored for it only (BUILDER_REGISTRY_PASSWORD is never sent to Docker Hub)."""
        if host == self._own_registry:
            return RegistryClient.from_environment(host)
        user, password = docker_config_credentials(host) or (None, None)
        return RegistryClient(host, user, password)

    # -- builds ----------------------------------------------------------------------------
    def choice(self, reference: str) -> BaseChoice:
        with self._mutex:
            if reference not in self._choices:
                self._choices[reference] = self._choose(reference)
            return self._choices[reference]

    def _choose(self, reference: str) -> BaseChoice:
        mirror = self.settings.mirror if self.settings.from_mirror else None
        pinned = parse_reference(reference).digest
        if pinned:
            return choose(reference, pinned, mirror=mirror, origin="matrix")
        entry = self.lock.get(reference)
        if entry is not None and not entry.local:
            return choose(reference, entry.digest, mirror=mirror, origin="lock")
        if mirror:
            raise InputError(f"base image {reference} is not locked in {self.settings.lock}, and bases.from_mirror "
                             "builds only locked bases: run `builder bases lock` and `builder bases mirror`")
        local = self._local(reference)
        if local is not None and local[1] == LOCAL:
            return choose(reference, local[0], local=True)
        if local is None and entry is not None:  # locked as local, and this Engine lacks it
            raise StepFailed(self.missing_message(reference))
        try:
            digest = self._registry_digest(reference)
        except ServiceError as exc:
            if local is None:  # e.g. a local base not made yet, on a machine without Docker Hub
                raise ServiceError(f"{self.missing_message(reference)} ({exc})") from None
            return choose(reference, local[1], origin="engine")  # offline: the copy pulled earlier
        if digest is None:
            raise StepFailed(self.missing_message(reference))
        return choose(reference, digest)

    # -- lock and check --------------------------------------------------------------------
    def lookup(self, reference: str, engine: bool = True) -> str | None:
        """What the reference points at now: a digest, LOCAL, or None (its registry lacks it).
        engine=False asks the registry only (checking a lock entry that names a digest)."""
        pinned = parse_reference(reference).digest
        if pinned:
            return pinned
        local = self._local(reference) if engine else None
        if local is not None and local[1] == LOCAL:
            return LOCAL
        return self._registry_digest(reference)

    def _local(self, reference: str) -> tuple[str, str] | None:
        """(image id, LOCAL or the repo digest under its own name), None when the Engine lacks it."""
        image = dockerd.inspect_image(self.docker, reference)
        if image is None:
            return None
        name = parse_reference(reference).name
        for entry in image.repo_digests:
            repo, _, digest = entry.partition("@")
            if repo == name:
                return image.id, digest
        return image.id, LOCAL

    def _registry_digest(self, reference: str) -> str | None:
        ref = parse_reference(reference)
        info = self.client(ref.api_host).head_manifest(ref.repository, ref.ref)
        return info.digest if info else None

    def missing_message(self, reference: str) -> str:
        ref = parse_reference(reference)
        return (f"base image {reference} is neither in the local Docker store nor in registry {ref.api_host}; "
                f"a local base is made with `builder base create --tag {reference}`")

"""Where a base's digest comes from: the matrix, the lock, the local Engine or the registry
(fakes for the Engine and the registry; the real ones are in tests/integration/test_bases.py)."""

from __future__ import annotations

from types import SimpleNamespace

import docker.errors
import pytest

from builder.bases.lock import LOCAL
from builder.bases.resolve import BaseResolver
from builder.errors import InputError, ServiceError, StepFailed
from builder.matrix.model import BaseSettings
from builder.oci.registry import ManifestInfo

A, B, C = ("sha256:" + x * 64 for x in "abc")
REF = "127.0.0.1:5000/up/python:3.11"


class Engine:
    def __init__(self, images: dict):
        self.images = self
        self._images = images

    def get(self, reference):
        if reference not in self._images:
            raise docker.errors.ImageNotFound(reference)
        image_id, repo_digests = self._images[reference]
        return SimpleNamespace(attrs={"Id": image_id, "RepoDigests": repo_digests, "RootFS": {"Layers": []}})


class Registry:
    def __init__(self, tags: dict | None = None, down: bool = False):
        self.tags, self.down, self.asked = tags or {}, down, []

    def head_manifest(self, repo, ref):
        self.asked.append((repo, ref))
        if self.down:
            raise ServiceError("registry unreachable")
        return ManifestInfo(self.tags[ref], "application/vnd.oci.image.index.v1+json", 1) if ref in self.tags else None


def resolver(tmp_path, lock="", images=None, registry=None, **settings):
    (tmp_path / "bases.lock").write_text(lock)
    registry = registry or Registry()
    return BaseResolver(BaseSettings(tmp_path / "bases.lock", **settings), "127.0.0.1:5000",
                        lambda: Engine(images or {}), lambda host: registry), registry


def test_locked_digest_is_used_without_asking_anyone(tmp_path):
    r, registry = resolver(tmp_path, f"{REF} {A} 2026-12-01\n", registry=Registry({"3.11": B}))
    choice = r.choice(REF)
    assert (choice.digest, choice.origin, choice.from_text) == (A, "lock", f"{REF}@{A}")
    assert registry.asked == [] and r.choice(REF) is choice  # once per command


def test_local_only_image_is_identified_by_its_id(tmp_path):
    r, registry = resolver(tmp_path, images={"llm-factory/base:1": (C, [])})
    choice = r.choice("llm-factory/base:1")
    assert choice.local and choice.digest == C and choice.from_text == "llm-factory/base:1"
    assert registry.asked == [] and r.lookup("llm-factory/base:1") == LOCAL


def test_a_repo_digest_under_another_name_is_still_local(tmp_path):
    r, _ = resolver(tmp_path, images={"llm-factory/base:1": (C, [f"127.0.0.1:9/mirror@{A}"])})
    assert r.choice("llm-factory/base:1").local


def test_the_registry_wins_over_an_older_pulled_copy(tmp_path):
    r, _ = resolver(tmp_path, images={REF: (C, [f"127.0.0.1:5000/up/python@{A}"])},
                    registry=Registry({"3.11": B}))
    choice = r.choice(REF)
    assert (choice.digest, choice.origin, choice.from_text) == (B, "registry", f"{REF}@{B}")


def test_offline_falls_back_to_the_pulled_copy(tmp_path):
    r, _ = resolver(tmp_path, images={REF: (C, [f"127.0.0.1:5000/up/python@{A}"])}, registry=Registry(down=True))
    assert (r.choice(REF).digest, r.choice(REF).origin) == (A, "engine")
    r2, _ = resolver(tmp_path, registry=Registry(down=True))
    with pytest.raises(ServiceError, match="builder base create .*registry unreachable"):
        r2.choice(REF)


def test_missing_everywhere_names_base_create(tmp_path):
    r, _ = resolver(tmp_path)
    with pytest.raises(StepFailed, match="builder base create --tag 127.0.0.1:5000/up/python:3.11"):
        r.choice(REF)
    r, registry = resolver(tmp_path, "llm-factory/base:1 local 2026-12-01\n")
    with pytest.raises(StepFailed, match="neither in the local Docker store"):
        r.choice("llm-factory/base:1")
    assert registry.asked == []  # a base locked as local is never looked up on Docker Hub


def test_matrix_pin_needs_no_lookup_and_mirror_needs_the_lock(tmp_path):
    r, registry = resolver(tmp_path, mirror="127.0.0.1:5000/bases", from_mirror=True)
    pinned = r.choice(f"up/python:3.11@{A}")
    assert pinned.origin == "matrix" and pinned.from_text == f"127.0.0.1:5000/bases/docker.io/up/python:3.11@{A}"
    with pytest.raises(InputError, match="not locked"):
        r.choice(REF)
    assert registry.asked == []

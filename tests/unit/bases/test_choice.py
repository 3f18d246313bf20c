"""What the FROM lines say and what the content hash sees, per kind of base."""

from __future__ import annotations

import pytest

from builder.bases.choice import choose, mirror_repository
from builder.errors import InputError

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
CUDA = "nvidia/cuda:13.0.2-devel-ubuntu24.04"


def test_registry_base_is_pinned_keeping_the_tag():
    c = choose(CUDA, A, origin="lock")
    assert c.from_text == c.canonical_from == f"{CUDA}@{A}" and c.identity == f"{CUDA}@{A}"
    assert not c.local and not c.from_mirror and c.origin == "lock"


def test_mirror_changes_the_from_line_not_the_identity():
    up, mirrored = choose(CUDA, A), choose(CUDA, A, mirror="127.0.0.1:5000/llm-factory/bases/")
    assert mirrored.from_text == f"127.0.0.1:5000/llm-factory/bases/docker.io/nvidia/cuda:13.0.2-devel-ubuntu24.04@{A}"
    assert mirrored.identity == up.identity and mirrored.from_mirror


def test_local_base_keeps_its_tag_and_hashes_its_id():
    c = choose("llm-factory/bookworm-python:3.11", A, local=True)
    assert c.from_text == "llm-factory/bookworm-python:3.11" and c.local and c.origin == "engine"
    assert A in c.identity and choose("llm-factory/bookworm-python:3.11", B, local=True).identity != c.identity


def test_a_reference_pinned_in_the_matrix_stays_as_written():
    assert choose(f"vllm/vllm-openai:v0.19.1@{A}", A).from_text == f"vllm/vllm-openai:v0.19.1@{A}"
    with pytest.raises(InputError, match="names"):
        choose(f"vllm/vllm-openai:v0.19.1@{A}", B)


def test_mirror_repository_paths_are_valid():
    assert mirror_repository("h:1/m/", "127.0.0.1:5101/bases/x:1") == "h:1/m/127.0.0.1-5101/bases/x"
    assert mirror_repository("h:1/m", "debian:12") == "h:1/m/docker.io/library/debian"

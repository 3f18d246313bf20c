"""Image references parsed as Docker normalises them."""

from __future__ import annotations

import pytest

from builder.errors import InputError
from builder.oci.reference import parse_reference

A = "sha256:" + "a" * 64


@pytest.mark.parametrize("text,registry,repository,tag,digest,name", [
    ("nvidia/cuda:13.0.2-devel-ubuntu24.04", "docker.io", "nvidia/cuda", "13.0.2-devel-ubuntu24.04", None, "nvidia/cuda"),
    ("debian", "docker.io", "library/debian", "latest", None, "debian"),
    ("127.0.0.1:5000/llm-factory/bases/x:1", "127.0.0.1:5000", "llm-factory/bases/x", "1", None,
     "127.0.0.1:5000/llm-factory/bases/x"),
    ("localhost/a/b", "localhost", "a/b", "latest", None, "localhost/a/b"),
    (f"vllm/vllm-openai:v0.19.1@{A}", "docker.io", "vllm/vllm-openai", "v0.19.1", A, "vllm/vllm-openai"),
    (f"nvcr.io/nvidia/cuda@{A}", "nvcr.io", "nvidia/cuda", None, A, "nvcr.io/nvidia/cuda"),
    ("llm-factory/bookworm-python:3.11", "docker.io", "llm-factory/bookworm-python", "3.11", None,
     "llm-factory/bookworm-python"),
])
def test_parse(text, registry, repository, tag, digest, name):
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest, ref.name) == (registry, repository, tag, digest, name)
    assert ref.ref == (digest or tag)  # a digest wins over the tag, as in Docker


def test_docker_hub_api_host():
    assert parse_reference("nvidia/cuda:1").api_host == "registry-1.docker.io"
    assert parse_reference("127.0.0.1:5000/a:1").api_host == "127.0.0.1:5000"


@pytest.mark.parametrize("bad", ["", " x", "Upper/Case:1", "a@sha256:123", "a:bad!tag", "a b"])
def test_bad_references_are_input_errors(bad):
    with pytest.raises(InputError):
        parse_reference(bad)

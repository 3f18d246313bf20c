"""The content hash: stable for the same inputs and sensitive to each input."""

from __future__ import annotations

import dataclasses

import pytest

from builder.hashing import content_hash
from builder.matrix.cells import expand
from builder.matrix.load import load_matrix
from builder.patching.records import PatchPlan
from builder.render.context import RenderOptions, render_cell

BASE = {"Dockerfile": b"FROM x\n", "patches/a.diff": b"--- a\n+++ b\n", "provenance.json": b"{}\n"}
ARGS = {"FACTORY_CELL": "c"}


def test_same_inputs_same_hash():
    assert content_hash(dict(BASE), dict(ARGS), "base:1", "linux/amd64") == \
        content_hash(dict(reversed(list(BASE.items()))), dict(ARGS), "base:1", "linux/amd64")


@pytest.mark.parametrize("change", [
    lambda f, a, b, p: ({**f, "Dockerfile": b"FROM y\n"}, a, b, p),
    lambda f, a, b, p: ({**f, "patches/a.diff": b"--- a\n+++ c\n"}, a, b, p),
    lambda f, a, b, p: ({**f, "overlays/x.py": b""}, a, b, p),
    lambda f, a, b, p: ({k.replace("a.diff", "b.diff"): v for k, v in f.items()}, a, b, p),
    lambda f, a, b, p: (f, {**a, "MAX_JOBS": "4"}, b, p),
    lambda f, a, b, p: (f, a, "base:2", p),
    lambda f, a, b, p: (f, a, b, "linux/arm64"),
], ids=["dockerfile", "patch-content", "added-file", "renamed-file", "build-arg", "base-image", "platform"])
def test_each_input_changes_the_hash(change):
    before = content_hash(BASE, ARGS, "base:1", "linux/amd64")
    assert content_hash(*change(BASE, ARGS, "base:1", "linux/amd64")) != before


def test_external_files_hash_by_content(tmp_path):
    wheel = tmp_path / "w.whl"
    wheel.write_bytes(b"one")
    first = content_hash({**BASE, "wheels/w.whl": wheel}, ARGS, "b", "p")
    assert first == content_hash({**BASE, "wheels/w.whl": b"one"}, ARGS, "b", "p")
    wheel.write_bytes(b"two")
    assert content_hash({**BASE, "wheels/w.whl": wheel}, ARGS, "b", "p") != first


def test_rendered_hash_is_byte_stable_and_tracks_the_base(small_matrix):
    cell = expand(load_matrix(small_matrix)).cells[-1]
    empty = PatchPlan((), (), False)
    first = render_cell(cell, empty)
    assert render_cell(cell, empty).content_hash == first.content_hash
    assert first.immutable_tag == f"vllm-0.20.2-cpu-{first.content_hash[:16]}"
    moved = render_cell(dataclasses.replace(cell, base_image="base/python:3.12"), empty)
    assert moved.content_hash != first.content_hash


def test_find_links_wheels_enter_the_hash(small_matrix, tmp_path):
    cell = expand(load_matrix(small_matrix)).cells[-1]
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "torch-2.13.0+cpu-cp311-cp311-linux_x86_64.whl").write_bytes(b"a")
    empty = PatchPlan((), (), False)
    one = render_cell(cell, empty, RenderOptions(find_links=wheels))
    (wheels / "torch-2.13.0+cpu-cp311-cp311-linux_x86_64.whl").write_bytes(b"b")
    two = render_cell(cell, empty, RenderOptions(find_links=wheels))
    assert one.content_hash != two.content_hash

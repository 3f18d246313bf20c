"""Tier 4's pure parts on the real matrix and the real llama.cpp template: which cells can be built at
a commit, what the cell built from a commit is, what its rendered context holds in place of the pinned
source, the step image's tag, and the ccache statistics a build log prints."""

from __future__ import annotations

import gzip
import io
import tarfile

import pytest

from builder.errors import InputError
from builder.matrix.cells import expand
from builder.matrix.load import load_matrix
from builder.patching.records import PatchPlan
from builder.render.context import RenderOptions, render_cell
from builder.bisect.sourcebuild import (
    CcacheStats,
    check_commit,
    check_origin,
    commit_cell,
    full_build_problem,
    parse_ccache,
    step_tag,
)
from tests.conftest import REPO

LLAMA = "llama.cpp-b11312-cpu"
SHA_A, SHA_B = "a1" * 20, "b2" * 20


@pytest.fixture(scope="module")
def cells():
    return {c.id: c for c in expand(load_matrix(REPO / "matrix.yaml")).cells}


def archive(tmp_path, name: str, text: str):
    """A tar.gz with one top directory, as `git archive --prefix=source/` makes."""
    data = text.encode()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("source/tools/server/server.cpp")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    path = tmp_path / name
    path.write_bytes(gzip.compress(raw.getvalue(), mtime=0))
    return path


def render_at(cell, sha, path):
    at = commit_cell(cell, sha, "/src/llama history")
    return render_cell(at, PatchPlan((), (), checked=True), RenderOptions(source_archive=path, source_sha256="0" * 64))


def test_only_source_cells_build_at_a_commit(cells):
    assert full_build_problem(cells[LLAMA]) is None
    assert "wheel cell has no source build" in full_build_problem(cells["vllm-0.32.0-cpu"])
    with pytest.raises(InputError, match="wheel cell"):
        commit_cell(cells["vllm-0.32.0-cpu"], SHA_A, "/src/vllm")


def test_the_cell_at_a_commit_keeps_its_id_and_names_the_commit_as_its_source(cells):
    at = commit_cell(cells[LLAMA], SHA_A, "/src/llama history")
    assert at.id == LLAMA and at.mode == "source" and at.base_image == cells[LLAMA].base_image
    assert at.engine_version.source.describe() == f"git:/src/llama history@{SHA_A}"
    assert at.engine_version.build_vars == {}  # the pinned tree's build number is not this commit's
    assert cells[LLAMA].engine_version.build_vars  # the matrix's cell is untouched


def test_the_commit_archive_replaces_the_pinned_source_in_the_context(cells, tmp_path):
    """The rendered context carries the commit's archive where `builder build` puts the sdist, the build
    names the commit (not the pinned b11312), and ccache sits in a BuildKit cache mount."""
    path = archive(tmp_path, "a.tar.gz", "int main() {}\n")
    context = render_at(cells[LLAMA], SHA_A, path)
    sources = {k: v for k, v in context.external.items() if k.startswith("source/")}
    assert sources == {"source/llama.cpp-b11312.tar.gz": path}
    dockerfile = context.files["Dockerfile"].decode()
    assert f"-DLLAMA_BUILD_COMMIT={SHA_A[:9]}" in dockerfile and "-DLLAMA_BUILD_NUMBER" not in dockerfile
    assert "0c1e57098" not in dockerfile  # the pinned tree's commit
    assert "RUN --mount=type=cache,target=/root/.cache/ccache" in dockerfile
    assert "ccache --zero-stats" in dockerfile and "ccache --print-stats" in dockerfile
    assert f"git:/src/llama history@{SHA_A}" in dockerfile  # one comment line, spaces kept
    assert b'"commit": "' + SHA_A.encode() in context.files["provenance.json"]


def test_same_commit_same_hash_other_commit_other_hash(cells, tmp_path):
    a = archive(tmp_path, "a.tar.gz", "int main() { return 0; }\n")
    b = archive(tmp_path, "b.tar.gz", "int main() { return 1; }\n")
    first, again = render_at(cells[LLAMA], SHA_A, a), render_at(cells[LLAMA], SHA_A, a)
    assert first.content_hash == again.content_hash
    assert render_at(cells[LLAMA], SHA_B, b).content_hash != first.content_hash
    assert step_tag(LLAMA, first.content_hash) == f"llm-factory-bisect/{LLAMA}:{first.content_hash.split(':')[-1][:16]}"


@pytest.mark.parametrize("sha", ["a1b2c3", "A1" * 20, "a1" * 20 + "\nRUN curl x", "-" + "a" * 39, ""])
def test_a_commit_id_that_is_not_one_is_refused(sha):
    with pytest.raises(InputError, match="not a full git commit id"):
        check_commit(sha)


def test_a_repository_path_with_a_control_character_is_refused():
    with pytest.raises(InputError, match="control character"):
        check_origin("/src/llama\nRUN rm -rf /")
    assert check_origin("/src/llama history") == "/src/llama history"


def test_step_tag_takes_only_a_content_hash():
    with pytest.raises(InputError):
        step_tag(LLAMA, "sha256:../../etc")


def test_ccache_statistics_of_a_buildkit_log():
    log = ("#12 4.1 compiling with 2 jobs\n#12 1802.3 [312/312] Linking CXX executable bin/llama-server\n"
           "#12 1802.9 cache_miss\t298\n#12 1802.9 direct_cache_hit\t7\n#12 1802.9 preprocessed_cache_hit\t2\n")
    stats = parse_ccache(log)
    assert stats == CcacheStats(hits=9, misses=298)
    assert stats.describe() == "ccache 9 hit(s), 298 miss(es) (3%)"
    assert parse_ccache("#12 DONE 1803.0s\n") is None
    assert CcacheStats(hits=0, misses=0).hit_rate is None

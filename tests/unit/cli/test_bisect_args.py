"""`builder bisect` validates every argument before any registry or Docker Engine call: each bad
argument is one line on stderr and exit 2, with the docker package blocked and the registry
unreachable (so any such call would fail otherwise)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.unit.bisect.lab import commit, git
from tests.unit.cli.test_no_docker_sdk import BLOCK_DOCKER

CELL = "vllm-0.32.0-cpu"


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> tuple[Path, str, str]:
    root = tmp_path_factory.mktemp("bisect-args") / "vllm-repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    good = commit(root, "start", {"vllm/__init__.py": "x = 1\n"})
    bad = commit(root, "change (#7)", {"vllm/__init__.py": "x = 2\n"})
    return root, good, bad


def bisect(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "BUILDER_REGISTRY": "127.0.0.1:1"}  # nothing listens there
    return subprocess.run([sys.executable, "-c", BLOCK_DOCKER, "bisect", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=60, env=env)


@pytest.mark.parametrize("extra, message", [
    (["--metric", "speed"], "--metric must be one of throughput, golden, checks"),
    (["--concurrency", "0"], "--concurrency must be between 1 and 256"),
    (["--max-tokens", "2"], "--max-tokens must be between 4 and 4096"),
    (["--pairs", "1"], "--pairs must be between 3 and 100"),
    (["--min-effect", "0"], "--min-effect must be a fraction"),
    (["--paths", ""], "--paths: '' is not a path glob"),
    (["--image", "Not An Image"], "--image: 'Not An Image' is not an image reference"),
    (["--package-dir", "../x"], "--package-dir: '../x' is not a relative directory"),
    (["--good", "no-such-ref"], "unknown git revision 'no-such-ref'"),
    (["--good", "0.32.0"], "--good: '0.32.0' is an engine version of the matrix (cell vllm-0.32.0-cpu), but the "
                           "repository has no revision 'v0.32.0' or '0.32.0'"),
    (["--bad", "HEAD~1"], "--good and --bad are the same commit"),
    (["--images", "127.0.0.1:5000/up/vllm:nightly"], "--images: '127.0.0.1:5000/up/vllm:nightly' names no commit"),
    (["--cell", "vllm-9.9.9-cpu"], "--cell: 'vllm-9.9.9-cpu' is not a cell of the matrix"),
])
def test_a_bad_argument_is_one_line_and_exit_2(repo, extra, message):
    root, good, bad = repo
    args = {"--cell": CELL, "--good": good, "--bad": bad, "--repo": str(root), "--image": "127.0.0.1:5000/x/y:z"}
    for key, value in zip(extra[::2], extra[1::2]):
        args[key] = value
    done = bisect(*[part for kv in args.items() for part in kv])
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr


def test_repo_is_required_and_must_be_a_directory(repo, tmp_path):
    _, good, bad = repo
    done = bisect("--cell", CELL, "--good", good, "--bad", bad)
    assert done.returncode == 2 and "--repo is required" in done.stderr
    done = bisect("--cell", CELL, "--good", good, "--bad", bad, "--repo", str(tmp_path / "missing"))
    assert done.returncode == 2 and "is not a directory" in done.stderr


def test_a_version_ref_resolves_through_its_tag(repo):
    root, good, bad = repo
    git(root, "tag", "-f", "v0.32.0", good)
    try:
        done = bisect("--cell", CELL, "--good", "0.32.0", "--bad", bad, "--repo", str(root),
                      "--image", "127.0.0.1:5000/x/y:z")
    finally:
        git(root, "tag", "-d", "v0.32.0")
    assert done.returncode == 1 and "needs the docker Python package" in done.stderr, done.stderr
    assert f"0.32.0 (engine version, cell {CELL}) = {good[:12]}" in done.stderr


def test_valid_arguments_get_past_validation_to_the_engine(repo):
    root, good, bad = repo
    done = bisect("--cell", CELL, "--good", good, "--bad", bad, "--repo", str(root), "--image", "127.0.0.1:5000/x/y:z")
    assert done.returncode == 1 and "needs the docker Python package" in done.stderr  # the first engine use is after validation
    assert len(done.stderr.strip().splitlines()) == 3  # the two refs, then one line: no traceback

"""`builder bisect` with GOOD newer than BAD is bad input (exit 2), refused before any registry or Docker Engine
call: before 2026-12-03 it asked the registry first and answered "unreachable" (exit 3)."""

from __future__ import annotations

import subprocess

from tests.conftest import REPO, run_builder


def test_good_newer_than_bad_is_refused_before_the_registry(tmp_path):
    repo = tmp_path / "r"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    for subject in ("older", "newer"):
        subprocess.run(["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q",
                        "--allow-empty", "-m", subject], check=True)
    newer = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    older = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD~1"], capture_output=True, text=True).stdout.strip()
    done = run_builder("bisect", "--matrix", str(REPO / "matrix.yaml"), "--cell", "vllm-0.32.0-cpu", "--repo", str(repo),
                       "--good", newer, "--bad", older, "--registry", "127.0.0.1:9")
    assert done.returncode == 2, done.stderr
    assert "is not an ancestor of --bad" in done.stderr and "unreachable" not in done.stderr

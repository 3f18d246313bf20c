"""`builder bases lock` writes only a regular bases.lock beside matrix.yaml: a lock that is a symbolic
link, or that sits in a linked directory leading outside, is refused (exit 2, one line) before it is
read, before any Docker Engine or registry is asked, and the link's target is untouched."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from builder.bases.locking import lock_bases
from builder.errors import ConfigError
from builder.util import write_replacing

ROOT = Path(__file__).resolve().parents[3]


def _matrix(tmp_path: Path, lock: str | None = None) -> Path:
    home = tmp_path / "m"
    home.mkdir()
    text = (ROOT / "matrix.yaml").read_text()
    if lock is not None:  # bases: {lock: FILE}
        assert "\nbases:" not in text
        text += f"\nbases:\n  lock: {lock}\n"
    (home / "matrix.yaml").write_text(text)
    return home / "matrix.yaml"


def _lock(matrix: Path) -> subprocess.CompletedProcess:
    env = {"DOCKER_HOST": "tcp://127.0.0.1:9", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "builder", "bases", "lock", "--matrix", str(matrix)],
                          capture_output=True, text=True, timeout=120, env=env)


def test_a_symlinked_lock_is_refused_and_its_target_untouched(tmp_path):
    matrix = _matrix(tmp_path)
    victim = tmp_path / "victim"
    victim.write_text("")
    (matrix.parent / "bases.lock").symlink_to(victim)
    done = _lock(matrix)
    assert done.returncode == 2 and "is a symbolic link" in done.stderr and len(done.stderr.splitlines()) == 1
    assert victim.read_text() == ""


def test_a_lock_in_a_linked_directory_outside_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "bases.lock").write_text("")
    matrix = _matrix(tmp_path, lock="locks/bases.lock")
    (matrix.parent / "locks").symlink_to(outside)
    done = _lock(matrix)
    assert done.returncode == 2 and "resolves outside" in done.stderr, done.stderr
    assert (outside / "bases.lock").read_text() == ""


def test_lock_bases_checks_before_it_resolves(tmp_path):
    class Unreachable:
        def lookup(self, reference):
            raise AssertionError("resolved before the path was checked")

    (tmp_path / "bases.lock").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="symbolic link"):
        lock_bases(Unreachable(), ["debian:12"], {"debian:12"}, {}, tmp_path / "bases.lock", "2026-12-03")  # type: ignore[arg-type]


def test_the_write_replaces_a_link_planted_after_the_check(tmp_path):
    target = tmp_path / "bases.lock"
    write_replacing(target, "one\n", tmp_path)
    assert target.read_text() == "one\n" and not target.is_symlink()
    assert [p.name for p in tmp_path.iterdir()] == ["bases.lock"]  # no temporary file left

"""The type checker over builder/ (pyproject's [tool.mypy]: default checks everywhere, strict on the pure
cores): it passes, and it fails when an engine module lacks a member of the engine Protocol."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def mypy(cwd: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(cache)], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def test_the_package_type_checks(tmp_path):
    done = mypy(ROOT, ROOT / ".mypy_cache")
    assert done.returncode == 0, done.stdout + done.stderr


def test_an_engine_module_missing_a_protocol_member_fails_the_check(tmp_path):
    """The control: llama.cpp without `stream_usage` (getattr defaults once hid two missing members)."""
    shutil.copytree(ROOT / "builder", tmp_path / "builder", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    module = tmp_path / "builder" / "engines" / "llamacpp.py"
    text, count = re.subn(r"(?m)^stream_usage\b", "stream_usage_renamed", module.read_text())
    assert count == 1
    module.write_text(text)
    done = mypy(tmp_path, tmp_path / "cache")
    assert done.returncode == 1 and "Found 1 error" in done.stdout, done.stdout + done.stderr
    assert "builder/engines/__init__.py" in done.stdout and "EngineModule" in done.stdout

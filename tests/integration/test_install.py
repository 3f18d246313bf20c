"""A plain (non-editable) `pip install .` into a fresh venv: the package carries its templates and
patch records, so a matrix in another folder renders and checks patches without this checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration

CELL = "vllm-0.20.2-cu130-sm_121a"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    source = tmp_path_factory.mktemp("src") / "factory"
    # a copy, so the install cannot see this checkout (and an editable path could not sneak in)
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__", ".stage*"))
    done = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(source)], capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    shutil.rmtree(source)
    return venv


def test_a_plain_install_renders_and_checks_a_matrix_in_another_folder(installed, tmp_path):
    elsewhere = tmp_path / "my-images"
    elsewhere.mkdir()
    shutil.copy(REPO / "matrix.yaml", elsewhere / "matrix.yaml")  # no dockerfiles/, no patches/ beside it
    env = {**os.environ, "PATH": f"{installed / 'bin'}:{os.environ['PATH']}"}
    builder = str(installed / "bin" / "builder")
    done = subprocess.run([builder, "render", "--cell", CELL, "--out", str(tmp_path / "out")], cwd=elsewhere,
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rendered = (tmp_path / "out" / CELL / "Dockerfile").read_text()
    assert rendered == (REPO / "tests" / "golden" / f"{CELL}.Dockerfile").read_text()
    # the shipped records, judged against the real 0.20.2 sdist
    done = subprocess.run([builder, "patches", "check", "--versions", "0.20.2", "--arch", "sm_121a"], cwd=elsewhere,
                          capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "vllm-sm121a-archs-0.20" in done.stdout and "applies" in done.stdout
    where = subprocess.run([str(installed / "bin" / "python"), "-c", "import builder; print(builder.__file__)"],
                           capture_output=True, text=True, timeout=60, cwd=elsewhere).stdout
    assert str(REPO) not in where and "site-packages" in where


def test_a_plain_install_writes_the_board(installed, plain_registry, tmp_path):
    """The board's page templates travel as package data too."""
    elsewhere = tmp_path / "my-images"
    elsewhere.mkdir()
    shutil.copy(REPO / "matrix.yaml", elsewhere / "matrix.yaml")
    done = subprocess.run([str(installed / "bin" / "builder"), "board", "--out", str(tmp_path / "board"),
                           "--registry", plain_registry.host, "--cell", "vllm-0.20.2-*"], cwd=elsewhere,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "never-built" in done.stdout and (tmp_path / "board" / "cells" / f"{CELL}.html").is_file()
    assert "<title>Matrix board</title>" in (tmp_path / "board" / "index.html").read_text()

"""`builder board` argument checks: one line, exit 2, before any network call; registry down: exit 3."""

import pytest

from tests.conftest import run_builder

DEAD = "127.0.0.1:1"  # nothing listens there: a connection attempt fails at once


@pytest.mark.parametrize("bad", ["file", "foreign", "arch", "cell"])
def test_bad_arguments_exit_2_with_one_line_and_no_registry_call(tmp_path, bad):
    out = tmp_path / "site"
    extra: list[str] = []
    if bad == "file":
        out.write_text("not a directory")
    elif bad == "foreign":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    elif bad == "arch":
        extra = ["--arch", "sm_999"]
    else:
        extra = ["--cell", "nothing-like-this-*"]
    done = run_builder("board", "--out", str(out), "--registry", DEAD, *extra)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and DEAD not in lines[0], lines
    assert {"file": "is not a directory", "foreign": "holds other files", "arch": "--arch: unknown arch",
            "cell": "no cell matches"}[bad] in lines[0]
    if bad == "foreign":
        assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_unreachable_registry_exits_3_with_one_line(tmp_path):
    done = run_builder("board", "--out", str(tmp_path / "site"), "--registry", DEAD)
    assert done.returncode == 3
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: registry {DEAD} unreachable"), lines
    assert not (tmp_path / "site" / "index.html").exists()


def test_help_names_the_command_and_an_example():
    done = run_builder("board", "--help")
    assert done.returncode == 0 and "builder board --out board" in done.stdout

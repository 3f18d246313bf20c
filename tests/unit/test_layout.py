"""README.md's Layout table is what scripts/layout.py makes from the package's docstrings, every module
has a docstring, and each stage's docstring carries its place in the pipeline order (STAGES)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.layout_script import load_layout

layout = load_layout()


def test_readme_layout_block_is_what_the_script_renders():
    reason = layout.check(layout.README.read_text(encoding="utf-8"))
    assert reason is None, reason


def test_every_module_has_a_docstring():
    assert layout.missing_docstrings() == [], "give each a one-line docstring saying what it is"


def test_each_stage_docstring_carries_its_number_in_the_pipeline_order():
    assert layout.stage_problems() == []


def test_a_readme_with_a_row_removed_is_reported(tmp_path, monkeypatch, capsys):
    """The control: drop one generated row from README and the check (and --check) must fail."""
    text = layout.README.read_text(encoding="utf-8")
    row = next(line for line in layout.block(text).splitlines() if "`cells`" in line)
    mutated = text.replace(row + "\n", "", 1)
    assert mutated != text
    assert layout.check(mutated) == f"README.md's layout table differs from the package's docstrings: {layout.WRITE_HINT}"
    readme = tmp_path / "README.md"
    readme.write_text(mutated, encoding="utf-8")
    monkeypatch.setattr(layout, "README", readme)
    assert layout.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run python scripts/layout.py --write" in err
    assert layout.main(["--write"]) == 0
    assert readme.read_text(encoding="utf-8") == text


def test_a_readme_without_markers_is_reported():
    assert "no <!-- layout:begin -->" in layout.check("# README\n")


def _fake_package(root: Path) -> Path:
    package = root / "builder"
    for n, stage in enumerate(layout.STAGES, start=1):
        (package / stage).mkdir(parents=True)
        (package / stage / "__init__.py").write_text(f'"""Stage {n}, {stage}: the {stage} stage."""\n')
        (package / stage / "part.py").write_text(f'"""A part of {stage}."""\n')
    return package


def test_a_module_without_a_docstring_is_reported(tmp_path):
    package = _fake_package(tmp_path)
    (package / "matrix" / "bare.py").write_text("X = 1\n")
    (package / "shipped" / "dockerfiles").mkdir(parents=True)
    (package / "shipped" / "dockerfiles" / "data.py").write_text("X = 1\n")  # package data: not a module
    assert layout.missing_docstrings(package) == ["builder/matrix/bare.py"]


def test_a_stage_docstring_with_the_wrong_number_is_reported(tmp_path):
    package = _fake_package(tmp_path)
    assert layout.stage_problems(package) == []
    (package / "smoke" / "__init__.py").write_text('"""Stage 5, smoke: boot an image."""\n')
    (package / "bisect" / "__init__.py").write_text('"""builder bisect: find the commit."""\n')
    assert layout.stage_problems(package) == [
        "builder/smoke/__init__.py says Stage 5; it is stage 8 in STAGES",
        "builder/bisect/__init__.py: the docstring must start 'Stage N, <name>: ' (N = 15)",
    ]


@pytest.mark.parametrize(("doc", "expected"), [
    ("Typed errors. Each carries the exit code the CLI returns for it.",
     "Typed errors. Each carries the exit code the CLI returns for it."),
    ("A first line\ncontinued.\n\nA second paragraph.", "A first line continued."),
    ("Short. " + "x" * 120, "Short."),
    ("word " * 30, ("word " * 20).strip() + " ..."),
    ("Making a step's image (side effects). Tier 3, the python overlay:", "Making a step's image (side effects)."),
    ("`builder audit IMAGE|WHEEL`: the audit.", "`builder audit IMAGE\\|WHEEL`: the audit."),
])
def test_how_a_docstring_is_shortened(doc, expected):
    assert layout.summary(doc) == expected

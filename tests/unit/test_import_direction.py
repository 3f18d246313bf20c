"""The package reads as the pipeline: a stage imports only earlier stages and the shared low-level
modules; nothing imports cli/. Checked over the real import graph of builder/ (every import
statement, at any depth in a module, so a lazy import inside a function counts too)."""

from __future__ import annotations

import ast
from pathlib import Path

import builder

PACKAGE = Path(builder.__file__).parent
# The stages in pipeline order; a stage may import those before it.
STAGES = ("matrix", "patching", "bases", "render", "jobs", "buildkit", "audit", "smoke", "measure", "proof", "promotion",
          "workflows", "board", "bisect")
# Shared low-level modules: importable from every stage; they import only each other.
SHARED = ("errors", "names", "util", "hashing", "yamlout", "table", "shipped", "engines", "oci", "checkresult")
TOP = ("cli", "pipeline", "__main__", "__init__")  # may import anything; only __main__ imports cli


def imported_parts(path: Path) -> list[tuple[int, str]]:
    """(line, first component under builder) of every builder import in a module."""
    tree = ast.parse(path.read_text())
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names = [module] if node.module else [f"{module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "builder" and len(parts) > 1:
                found.append((node.lineno, parts[1]))
    return found


def violations() -> list[str]:
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        owner = rel.parts[0].removesuffix(".py")
        for line, target in imported_parts(path):
            if target == owner:
                continue
            where = f"builder/{rel}:{line} imports builder.{target}"
            if target == "cli" and owner != "__main__":
                bad.append(f"{where}: nothing imports cli/")
            elif owner in TOP:
                continue
            elif target in TOP:
                bad.append(f"{where}: a stage never imports {target}")
            elif owner in SHARED and target not in SHARED:
                bad.append(f"{where}: a shared module imports only shared modules")
            elif owner in STAGES and target in STAGES and STAGES.index(target) > STAGES.index(owner):
                bad.append(f"{where}: a later stage")
            elif owner not in STAGES + SHARED:
                bad.append(f"builder/{rel}: not a known stage or shared module (add it to this test's lists)")
                break
    return bad


def test_every_stage_imports_only_earlier_stages_and_shared_modules():
    assert violations() == []


def test_the_check_catches_an_import_of_a_later_stage(tmp_path, monkeypatch):
    """The mutation this test exists for: matrix importing promotion must be reported."""
    fake = tmp_path / "builder"
    (fake / "matrix").mkdir(parents=True)
    (fake / "promotion").mkdir()
    (fake / "matrix" / "model.py").write_text("def f():\n    from builder.promotion.store import RecordStore\n")
    (fake / "cli.py").write_text("")
    (fake / "util.py").write_text("from builder.cli import app\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["PACKAGE"]), "PACKAGE", fake)
    found = violations()
    assert any("matrix/model.py:2 imports builder.promotion: a later stage" in v for v in found)
    assert any("util.py:1 imports builder.cli: nothing imports cli/" in v for v in found)

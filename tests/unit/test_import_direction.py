"""The package reads as the pipeline: a stage imports only earlier stages and the shared low-level
modules; nothing imports cli/. Checked over the real import graph of builder/ (every import
statement, at any depth in a module, so a lazy import inside a function counts too; `from builder
import x`, relative imports and importlib.import_module / __import__ calls count as well)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import builder
from tests.unit.layout_script import load_layout

PACKAGE = Path(builder.__file__).parent




# The classification has one owner, scripts/layout.py: the README's Layout table shows the stages in
# this order and each stage's docstring carries its number in it (tests/unit/test_layout.py), so the
# order this test enforces and the one the README and docstrings state cannot drift apart.
_layout = load_layout()
STAGES = _layout.STAGES  # pipeline order; a stage may import those before it
SHARED = _layout.SHARED  # importable from every stage; they import only each other
TOP = _layout.TOP  # may import anything; only __main__ imports cli
DYNAMIC = "?"  # the target of an import_module/__import__ whose name is not a literal
IMPORT_FUNCTIONS = ("import_module", "__import__")


def _absolute(name: str, level: int, package: str) -> str | None:
    """A possibly relative module name made absolute from the importing module's package (None when it
    climbs above the top)."""
    if not level:
        return name
    parts = package.split(".")
    if level - 1 >= len(parts):
        return None
    base = parts[: len(parts) - level + 1]
    return ".".join(base + ([name] if name else []))


def _targets(module: str | None, names: list[str]) -> list[str]:
    """The first component under builder that `from <module> import <names>` (or `import <module>`
    when names is empty) reaches: for `from builder import X`, X when X is a sub-package or module,
    else `__init__` (a name defined in builder/__init__.py)."""
    if not module:
        return []
    parts = module.split(".")
    if parts[0] != "builder":
        return []
    if len(parts) > 1:
        return [parts[1]]
    if not names:
        return ["__init__"]
    return [n if (PACKAGE / n).is_dir() or (PACKAGE / f"{n}.py").is_file() else "__init__" for n in names]


def _literal_strings(node: ast.expr | None) -> list[str] | None:
    if isinstance(node, (ast.List, ast.Tuple)) and all(isinstance(e, ast.Constant) and isinstance(e.value, str)
                                                        for e in node.elts):
        return [e.value for e in node.elts]
    return None


def _call_targets(node: ast.Call, package: str) -> list[str] | None:
    """Targets of importlib.import_module(...) / __import__(...) (None: not such a call)."""
    func = node.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
    if name not in IMPORT_FUNCTIONS or not node.args:
        return None
    first = node.args[0]
    keywords = {k.arg: k.value for k in node.keywords}
    if isinstance(first, ast.JoinedStr):  # f"builder.engines.{x}": its literal head names the target
        head = first.values[0] if first.values else None
        if isinstance(head, ast.Constant) and head.value.startswith("builder.") and "." in head.value[len("builder."):]:
            return _targets(head.value.rsplit(".", 1)[0], [])
        return [DYNAMIC]
    if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
        return [DYNAMIC]
    module = first.value
    if name == "import_module" and module.startswith("."):
        anchor = keywords.get("package", node.args[1] if len(node.args) > 1 else None)
        if not (isinstance(anchor, ast.Constant) and isinstance(anchor.value, str)):
            return [DYNAMIC]
        level = len(module) - len(module.lstrip("."))
        module = _absolute(module.lstrip("."), level, anchor.value)
    fromlist = _literal_strings(keywords.get("fromlist", node.args[3] if len(node.args) > 3 else None))
    if name == "__import__" and fromlist:
        return _targets(module, fromlist)
    return _targets(module, [])


def imported_parts(path: Path) -> list[tuple[int, str]]:
    """(line, first component under builder) of every builder import in a module, in every form:
    `import builder.x`, `from builder.x import y`, `from builder import x`, relative imports
    (`from .. import x`, `from ..x.y import z`), and importlib.import_module / __import__ calls with a
    literal name (any other name yields DYNAMIC, which the check reports)."""
    tree = ast.parse(path.read_text())
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = _absolute(node.module or "", node.level, package)
            targets = _targets(module, [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            targets = [t for a in node.names for t in _targets(a.name, [])]
        elif isinstance(node, ast.Call):
            targets = _call_targets(node, package) or []
        else:
            continue
        found += [(node.lineno, target) for target in targets]
    return sorted(found)


def violations() -> list[str]:
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        owner = rel.parts[0].removesuffix(".py")
        for line, target in imported_parts(path):
            if target == owner:
                continue
            where = f"builder/{rel}:{line} imports builder.{target}"
            if target == DYNAMIC:
                bad.append(f"builder/{rel}:{line}: a dynamic import this check cannot read (use a literal name)")
            elif target == "cli" and owner != "__main__":
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
                bad.append(f"builder/{rel}: not a known stage or shared module (add it to scripts/layout.py's lists)")
                break
            elif target not in STAGES + SHARED:
                bad.append(f"{where}: not a known stage or shared module (add it to scripts/layout.py's lists)")
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


def test_every_top_level_module_and_package_is_classified():
    """A new top-level module (grammar.py was one) must be placed in STAGES, SHARED or TOP."""
    entries = {p.stem for p in PACKAGE.glob("*.py")} | {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    known = STAGES + SHARED + TOP
    assert len(set(known)) == len(known), "a name is in two lists"
    assert sorted(entries - set(known)) == [], "not classified: add to scripts/layout.py's lists"
    assert sorted(set(known) - entries) == [], "listed but not in builder/"


def _fake(tmp_path, monkeypatch, files: dict[str, str]) -> list[str]:
    fake = tmp_path / "builder"
    for name in ("matrix", "promotion"):
        (fake / name).mkdir(parents=True, exist_ok=True)
        (fake / name / "__init__.py").write_text("")
    (fake / "promotion" / "store.py").write_text("")
    (fake / "grammar.py").write_text("")
    for rel, text in files.items():
        (fake / rel).write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    return violations()


LATER = ": a later stage"


@pytest.mark.parametrize(("rel", "text", "line"), [
    ("matrix/x.py", "from builder import promotion\n", 1),
    ("matrix/x.py", "import os\nfrom builder import grammar, promotion\n", 2),
    ("matrix/x.py", "def f():\n    from .. import promotion\n", 2),
    ("matrix/__init__.py", "from .. import promotion\n", 1),
    ("matrix/x.py", "from ..promotion.store import RecordStore\n", 1),
    ("matrix/x.py", "from ..promotion import store\n", 1),
    ("matrix/x.py", "import builder.promotion.store\n", 1),
    ("matrix/x.py", "import importlib\nimportlib.import_module('builder.promotion.store')\n", 2),
    ("matrix/x.py", "from importlib import import_module\nimport_module('builder.promotion')\n", 2),
    ("matrix/x.py", "import importlib\nimportlib.import_module('..promotion', package='builder.matrix')\n", 2),
    ("matrix/x.py", "__import__('builder.promotion')\n", 1),
    ("matrix/x.py", "__import__('builder', fromlist=['promotion'])\n", 1),
    ("matrix/x.py", "import importlib\nimportlib.import_module(f'builder.promotion.{name}')\n", 2),
])
def test_the_check_catches_every_import_form(tmp_path, monkeypatch, rel, text, line):
    found = _fake(tmp_path, monkeypatch, {rel: text})
    assert found == [f"builder/{rel}:{line} imports builder.promotion{LATER}"]


def test_the_check_allows_earlier_stages_and_shared_modules_in_every_form(tmp_path, monkeypatch):
    found = _fake(tmp_path, monkeypatch, {
        "promotion/x.py": "from builder import grammar, matrix\nfrom .. import matrix\nfrom . import store\n"
                          "from .store import X\nfrom ..matrix import cells\n__import__('builder.grammar')\n",
        "matrix/x.py": "from builder.grammar import check\nimport builder.matrix.cells\n",
    })
    assert found == []


def test_the_check_reports_a_name_from_builder_init_a_dynamic_import_and_an_unknown_module(tmp_path, monkeypatch):
    found = _fake(tmp_path, monkeypatch, {
        "matrix/x.py": "from builder import __version__\nimport importlib\nimportlib.import_module(name)\n"
                       "import builder.newthing\n",
    })
    assert found == [
        "builder/matrix/x.py:1 imports builder.__init__: a stage never imports __init__",
        "builder/matrix/x.py:3: a dynamic import this check cannot read (use a literal name)",
        ("builder/matrix/x.py:4 imports builder.newthing: not a known stage or shared module "
         "(add it to scripts/layout.py's lists)"),
    ]

"""Everything engine-specific is a member of its engine module: no generic part of the package (every
module outside builder/engines/, the CLI included) may spell an engine's name, template directory or
package directory as a string of its own, as a default or a comparison. Comments are not code; a name
inside a longer text (a help example such as 'e.g. vllm/v1/**') is prose, not a choice."""

from __future__ import annotations

import ast
from pathlib import Path

import builder
from builder.engines import ENGINES

PACKAGE = Path(builder.__file__).parent


def engine_words() -> frozenset[str]:
    words = set()
    for module in ENGINES.values():
        words |= {module.name, module.template_dir}
        if module.package_dir:
            words.add(module.package_dir)
    return frozenset(words)


def literals(root: Path, words: frozenset[str]) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.relative_to(root).parts[0] == "engines":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in words:
                found.append(f"builder/{path.relative_to(root)}:{node.lineno}: {node.value!r}")
    return found


def test_no_generic_module_spells_an_engine():
    assert literals(PACKAGE, engine_words()) == []


def test_the_check_finds_a_default_and_a_comparison(tmp_path):
    (tmp_path / "smoke").mkdir()
    (tmp_path / "smoke" / "spec.py").write_text('# "vllm" in a comment is fine\n'
                                                'def f(engine: str = "vllm"):\n'
                                                '    return engine == "llama.cpp" or "see vllm/x" \n')
    assert literals(tmp_path, engine_words()) == ["builder/smoke/spec.py:2: 'vllm'", "builder/smoke/spec.py:3: 'llama.cpp'"]

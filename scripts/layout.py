"""The README's Layout table, generated from the package's own docstrings.

    python scripts/layout.py            # print the table
    python scripts/layout.py --write    # put it between the layout markers of README.md
    python scripts/layout.py --check    # exit 1 (one line) when README.md's block differs

This file owns the package's classification: STAGES (the pipeline order), SHARED and TOP. The
import-direction test (tests/unit/test_import_direction.py) and the layout test import them from
here, so the order the README shows, the stage numbers in the docstrings and the import rule the test
enforces are one tuple. It lives here rather than in the test because a script must not import from
tests/, and rather than in builder/ because the package has no use for it at run time.

Reads source only (ast), never imports builder/, so it runs without the package's dependencies.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "builder"
README = ROOT / "README.md"

# The stages in pipeline order; a stage may import those before it. A stage's number is its
# position here plus one, and its __init__.py docstring starts "Stage N, <name>: ...".
STAGES = ("matrix", "patching", "bases", "render", "jobs", "buildkit", "audit", "smoke", "measure", "proof", "attest", "promotion",
          "workflows", "board", "bisect", "watch")
# Shared low-level modules and packages: importable from every stage; they import only each other.
SHARED = ("errors", "names", "grammar", "util", "hashing", "yamlout", "table", "checkresult", "safetext", "net", "shipped", "engines", "oci")
# May import anything; only __main__ imports cli.
TOP = ("cli", "pipeline", "__main__", "__init__")

BEGIN = "<!-- layout:begin -->"
END = "<!-- layout:end -->"
WRITE_HINT = "run python scripts/layout.py --write"
STAGE_LINE = re.compile(r"Stage (\d+), ([^:]+): (.*)", re.DOTALL)
MAX_SUMMARY = 100


def docstring(path: Path) -> str | None:
    return ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))


def summary(doc: str) -> str:
    """How a docstring is shortened for the table: its first paragraph joined into one line; when
    longer than MAX_SUMMARY characters, cut after the last whole sentence (ending '.', '?' or '!')
    that fits, else at the last word boundary that fits, marked ' ...'; a trailing sentence that
    introduces a list (ends ':') is dropped. Pipes are escaped for the table."""
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    if len(paragraph) > MAX_SUMMARY:
        sentences = [m.end() for m in re.finditer(r"[.?!](?=\s)", paragraph) if m.end() <= MAX_SUMMARY]
        if sentences:
            paragraph = paragraph[:sentences[-1]]
        else:
            paragraph = paragraph[:MAX_SUMMARY].rsplit(" ", 1)[0].rstrip(",;:") + " ..."
    if paragraph.endswith(":"):  # a paragraph that introduces a list: its sentences before that
        sentences = [m.end() for m in re.finditer(r"[.?!](?=\s)", paragraph)]
        paragraph = paragraph[:sentences[-1]] if sentences else paragraph[:-1]
    return paragraph.replace("|", "\\|")


def modules(package: Path) -> list[Path]:
    """A package's own modules (not __init__.py), by name. Sub-directories are data (shipped/)."""
    return sorted(p for p in package.glob("*.py") if p.name != "__init__.py")


def stage_header(stage: str, package: Path = PACKAGE) -> tuple[int, str, str]:
    """(number in the docstring, name, the rest of its first paragraph) of a stage's __init__.py;
    ValueError when the docstring does not start "Stage N, <name>: "."""
    doc = docstring(package / stage / "__init__.py") or ""
    found = STAGE_LINE.match(doc)
    if not found:
        raise ValueError(f"builder/{stage}/__init__.py: the docstring must start 'Stage N, <name>: ' "
                         f"(N = {STAGES.index(stage) + 1})")
    return int(found.group(1)), found.group(2), found.group(3)


def stage_problems(package: Path = PACKAGE) -> list[str]:
    """A stage whose docstring is not 'Stage N, ...' with N its place in STAGES."""
    bad = []
    for n, stage in enumerate(STAGES, start=1):
        try:
            number, _, _ = stage_header(stage, package)
        except ValueError as e:
            bad.append(str(e))
            continue
        if number != n:
            bad.append(f"builder/{stage}/__init__.py says Stage {number}; it is stage {n} in STAGES")
    return bad


def missing_docstrings(package: Path = PACKAGE) -> list[str]:
    """Every module of the package without a docstring (shipped/ data below its __init__ excluded)."""
    return [f"builder/{p.relative_to(package)}" for p in sorted(package.rglob("*.py"))
            if not (p.relative_to(package).parts[0] == "shipped" and p.parent != package / "shipped")
            and not docstring(p)]


def _row(stage: str, package: str, module: str, what: str) -> str:
    return f"| {stage} | {package} | {module} | {what} |"


def _package_rows(label: str, name: str, package: Path, what: str) -> list[str]:
    rows = [_row(label, f"`{name}/`", "", what)]
    for path in modules(package):
        rows.append(_row("", "", f"`{path.stem}`", summary(docstring(path) or "")))
    return rows


def render(package: Path = PACKAGE) -> str:
    """The markdown table: the stages in order, the shared modules, then the top level."""
    rows = [_row("stage", "package", "module", "what"), "|---|---|---|---|"]
    for n, stage in enumerate(STAGES, start=1):
        _, name, rest = stage_header(stage, package)
        rows += _package_rows(f"{n} {name}", stage, package / stage, summary(rest))
    for name in SHARED:
        if (package / name).is_dir():
            rows += _package_rows("shared", name, package / name, summary(docstring(package / name / "__init__.py") or ""))
        else:
            rows.append(_row("shared", "top level", f"`{name}`", summary(docstring(package / f"{name}.py") or "")))
    for name in TOP:
        if name == "__init__":
            continue  # the package itself: the first table's `builder/` row
        if (package / name).is_dir():
            rows += _package_rows("top", name, package / name, summary(docstring(package / name / "__init__.py") or ""))
        else:
            rows.append(_row("top", "top level", f"`{name}`", summary(docstring(package / f"{name}.py") or "")))
    return "\n".join(rows) + "\n"


def block(text: str) -> str:
    """What README text holds between the markers (ValueError when they are missing)."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"README.md has no {BEGIN} ... {END} block")
    return text[start + len(BEGIN):end].strip("\n") + "\n"


def replaced(text: str, table: str) -> str:
    block(text)
    start, end = text.find(BEGIN) + len(BEGIN), text.find(END)
    return text[:start] + "\n" + table + text[end:]


def check(text: str, package: Path = PACKAGE) -> str | None:
    """None when README text's block is what render() makes; else the one-line reason."""
    problems = stage_problems(package)
    if problems:
        return problems[0]
    try:
        current = block(text)
    except ValueError as e:
        return str(e)
    if current != render(package):
        return f"README.md's layout table differs from the package's docstrings: {WRITE_HINT}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="replace the block between the markers in README.md")
    mode.add_argument("--check", action="store_true", help="exit 1 when README.md's block differs")
    args = parser.parse_args(argv)
    problems = stage_problems()
    if problems:
        print(problems[0], file=sys.stderr)
        return 1
    if args.check:
        reason = check(README.read_text(encoding="utf-8"))
        if reason:
            print(reason, file=sys.stderr)
            return 1
        return 0
    if args.write:
        text = README.read_text(encoding="utf-8")
        new = replaced(text, render())
        if new != text:
            README.write_text(new, encoding="utf-8")
        return 0
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())

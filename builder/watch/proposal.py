"""The proposed matrix: matrix.yaml's text with a release's pinned version entry added under
engines.<engine>.versions and its label beside the known-good's in each include rule that names it.
Pure text edits (comments and layout kept); the result is loaded again before anyone sees it."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from .releases import Release, version_entry


def _flow(entry: Mapping[str, str | Mapping[str, str]]) -> str:
    # JSON strings are YAML flow scalars; every value here passed the grammar checks already
    return "{" + ", ".join(f"{k}: {_flow(v) if isinstance(v, Mapping) else json.dumps(v)}"
                           for k, v in entry.items()) + "}"


def propose(text: str, release: Release, known_label: str, known: Mapping[str, str] | None = None,
            build_vars: Mapping[str, str] | None = None) -> str:
    """matrix.yaml's text with the release added; ValueError when the engine's versions block or an
    include rule naming `known_label` cannot be found."""
    lines = text.splitlines(keepends=True)
    engine_line = _find(lines, rf"  {re.escape(release.engine)}:\s*(#.*)?\n?", 0, "engines.<engine>")
    versions_line = _find(lines, r"    versions:\s*(#.*)?\n?", engine_line + 1, "engines.<engine>.versions")
    end = versions_line + 1
    while end < len(lines) and (not lines[end].strip() or lines[end].startswith("      ")):
        end += 1
    while not lines[end - 1].strip():  # the entry goes after the last version, not after blank lines
        end -= 1
    lines.insert(end, f"      {json.dumps(release.label)}: {_flow(version_entry(release, known, build_vars))}\n")
    rules = 0
    for i, line in enumerate(lines):
        if re.match(rf"  - engine: {re.escape(release.engine)}\s*(#.*)?$", line.rstrip("\n")):
            j = i + 1
            while j < len(lines) and lines[j].startswith("    ") and not lines[j].startswith("  - "):
                match = re.match(r"(    versions: \[)(.*)(\].*\n?)", lines[j])
                if match and json.dumps(known_label) in [v.strip() for v in match.group(2).split(",")]:
                    lines[j] = f"{match.group(1)}{match.group(2)}, {json.dumps(release.label)}{match.group(3)}"
                    rules += 1
                j += 1
    if not rules:
        raise ValueError(f"no include rule of {release.engine} lists \"{known_label}\" in a flow list")
    return "".join(lines)


def _find(lines: list[str], pattern: str, start: int, what: str) -> int:
    for i in range(start, len(lines)):
        if re.fullmatch(pattern, lines[i]):
            return i
    raise ValueError(f"{what} not found")

"""Pure rules: which changed files force a full build, and which can be overlaid as Python.

Globs follow gitignore habits: a pattern without '/' matches the file name at any depth (`*.cu`,
`CMakeLists.txt`); a pattern with '/' is anchored at the repository root (`csrc/**`); `**` spans
directories, `*` and `?` stay inside one path segment.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from .model import Classification, FileChange

DEFAULT_COMPILED: Final[tuple[str, ...]] = (
    "csrc/**", "cmake/**", "CMakeLists.txt", "setup.py", "pyproject.toml", "MANIFEST.in",
    "requirements/**", "requirements*.txt", "*.cu", "*.cuh", "*.cpp", "*.cc", "*.c", "*.h", "*.hpp",
    "*.pyx", "*.pxd", "*.so", "*.metal",
)
DEFAULT_IGNORED: Final[tuple[str, ...]] = (
    "docs/**", "tests/**", "benchmarks/**", ".github/**", ".buildkite/**", "*.md",
)
PR_PATTERNS: Final[tuple[re.Pattern[str], ...]] = (
    re.compile(r"\(#(\d+)\)\s*$"),  # squash merges: "Fix the thing (#38152)"
    re.compile(r"^Merge pull request #(\d+)\b"),  # merge commits of the GitHub UI
)


def parse_pr(subject: str) -> int | None:
    """The pull-request number a commit subject carries, or None."""
    for pattern in PR_PATTERNS:
        match = pattern.search(subject.strip())
        if match:
            return int(match.group(1))
    return None


@lru_cache(maxsize=512)
def glob_regex(pattern: str) -> re.Pattern[str]:
    p = pattern.strip()
    if p.endswith("/"):
        p += "**"
    anchored = "/" in p
    p = p.lstrip("/")
    out: list[str] = []
    i = 0
    while i < len(p):
        if p.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif p.startswith("**", i):
            out.append(".*")
            i += 2
        elif p[i] == "*":
            out.append("[^/]*")
            i += 1
        elif p[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(p[i]))
            i += 1
    return re.compile(("" if anchored else "(?:.*/)?") + "".join(out) + r"\Z")


def matches_any(path: str, patterns: Iterable[str]) -> str | None:
    """The first pattern that matches path, or None."""
    for pattern in patterns:
        if glob_regex(pattern).match(path):
            return pattern
    return None


@dataclass(frozen=True, kw_only=True)
class ClassifyRules:
    """package_dir: the engine's Python package in its repository (what an overlay replaces; its engine
    module's package_dir); None: the engine has none, so every change that is not ignored needs a build."""

    package_dir: str | None
    compiled: tuple[str, ...] = DEFAULT_COMPILED  # any match: the change needs a build
    ignored: tuple[str, ...] = DEFAULT_IGNORED  # outside the image: never forces a build

    def __post_init__(self) -> None:
        if self.package_dir is not None and not self.package_dir.strip("/"):
            raise ValueError("package_dir must name a directory")



@dataclass(frozen=True, kw_only=True)
class Classified:
    kind: Classification
    reason: str  # "" when python-only, else the file and the rule that forced a build
    overlay: tuple[FileChange, ...]  # the changes under package_dir (what a python overlay carries)


def classify(changes: Sequence[FileChange], rules: ClassifyRules) -> Classified:
    """python-only when every change is a non-compiled file under package_dir or an ignored file."""
    prefix = rules.package_dir.strip("/") + "/" if rules.package_dir else None
    overlay: list[FileChange] = []
    for change in changes:
        rule = matches_any(change.path, rules.compiled)
        if rule:
            return Classified(kind="needs-build", reason=f"{change.path} matches {rule}", overlay=())
        if prefix and change.path.startswith(prefix):
            overlay.append(change)
        elif not matches_any(change.path, rules.ignored):
            where = f"is outside {prefix}" if prefix else "changed, and the engine has no Python package to overlay"
            return Classified(kind="needs-build", reason=f"{change.path} {where}", overlay=())
    return Classified(kind="python-only", reason="", overlay=tuple(overlay))

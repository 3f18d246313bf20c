"""Tier 4, a full build at a commit (pure): which cells can have one, the cell as built from a commit,
the step image's tag, and the ccache statistics a build log prints.

A source cell is built from the bisect's repository at the candidate commit instead of its pinned
upstream source: the same template, the same base and patch records, with `source/<archive>` in the
rendered context replaced by `git archive` of the commit (fullbuild.py). The cell keeps its id (its
image, labels and template are the cell's); only the version's source becomes `git:<repo>@<commit>`
and the version's build_vars are dropped: they are facts about the pinned tree (llama.cpp: its build
number and commit), wrong for any other commit.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Final

from builder import grammar
from builder.errors import InputError
from builder.matrix.cells import Cell
from builder.matrix.model import SourceRef
from builder.names import LABEL_PREFIX

BISECT_LABEL: Final[str] = f"{LABEL_PREFIX}.bisect"  # every image a bisect makes carries these two
COMMIT_LABEL: Final[str] = f"{LABEL_PREFIX}.bisect.commit"
COMMIT: Final[re.Pattern[str]] = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # SHA-1 or SHA-256 object names
LOCAL_REPOSITORY: Final[str] = "llm-factory-bisect"  # step images stay local under this name, never pushed


def full_build_problem(cell: Cell) -> str | None:
    """Why a cell cannot be built at a commit (None: it can): only source cells build the engine."""
    if cell.mode == "source":
        return None
    if cell.mode == "wheel":
        return "a wheel cell has no source build (it installs the engine's released wheel)"
    return f"a {cell.mode} cell builds over an upstream image, not from the engine's source"


def check_commit(sha: str) -> str:
    """A commit from git, checked before it reaches a file name, a label or a build option."""
    if not COMMIT.fullmatch(sha):
        raise InputError(f"not a full git commit id: {sha[:80]!r}")
    return sha


def check_origin(origin: str) -> str:
    """Where the commits come from (the repository's path), as provenance.json and a Dockerfile comment
    name it: one line (the template's comment filter folds spaces; a control character is refused)."""
    problem = grammar.one_line(origin)
    if problem:
        raise InputError(f"--repo: {problem}: the path is written into the build's provenance")
    return origin


def commit_cell(cell: Cell, sha: str, origin: str) -> Cell:
    """The cell as built from `origin` at commit `sha`: the same cell, its version's source that commit."""
    problem = full_build_problem(cell)
    if problem:
        raise InputError(f"{cell.id}: {problem}")
    source = SourceRef(kind="git", url=check_origin(origin), commit=check_commit(sha))
    version = dataclasses.replace(cell.engine_version, source=source, build_vars={})
    return dataclasses.replace(cell, engine_version=version)


def step_tag(cell_id: str, content_hash: str) -> str:
    """`llm-factory-bisect/<cell>:<16 hex of the context's content hash>`: a rerun finds the image."""
    digest = content_hash.split(":")[-1]
    if not re.fullmatch(r"[0-9a-f]{16,}", digest):
        raise InputError(f"not a content hash: {content_hash[:80]!r}")
    return f"{LOCAL_REPOSITORY}/{cell_id.lower()}:{digest[:16]}"


@dataclass(frozen=True, kw_only=True)
class CcacheStats:
    """What one build's ccache did: compilations answered from the cache, and compiled."""

    hits: int
    misses: int

    @property
    def hit_rate(self) -> float | None:
        total = self.hits + self.misses
        return self.hits / total if total else None

    def describe(self) -> str:
        rate = self.hit_rate
        return f"ccache {self.hits} hit(s), {self.misses} miss(es)" + (f" ({rate:.0%})" if rate is not None else "")


# `ccache --print-stats` (ccache >= 4.4): one "key<TAB>value" per line; BuildKit's plain progress
# prefixes each line with "#12 3.456 ".
_PRINT_STATS = re.compile(r"(?:^|\s)(direct_cache_hit|preprocessed_cache_hit|cache_miss)\t(\d+)\s*$")
# `ccache -s` (older ccache, and 4.x's human summary): "Hits: 290 / 300" and "Misses: 10 / 300".
_SUMMARY = re.compile(r"(?:^|\s)(Hits|Misses):\s+(\d+)\s*/\s*\d+")


def parse_ccache(log: str) -> CcacheStats | None:
    """The last statistics a build log printed (None: it printed none).

    >>> parse_ccache("#9 61.2 direct_cache_hit\\t280\\n#9 61.2 preprocessed_cache_hit\\t3\\n#9 61.2 cache_miss\\t7\\n")
    CcacheStats(hits=283, misses=7)
    >>> parse_ccache("#9 2.0   Hits:               290 /  300 (96.67 %)\\n#9 2.0   Misses:              10 /  300 (3.33 %)")
    CcacheStats(hits=290, misses=10)
    >>> parse_ccache("no statistics here") is None
    True
    """
    found: dict[str, int] = {}
    for line in log.splitlines():
        if match := _PRINT_STATS.search(line):
            found[match.group(1)] = int(match.group(2))
        elif match := _SUMMARY.search(line):
            found[match.group(1)] = int(match.group(2))
    if "cache_miss" in found:
        return CcacheStats(hits=found.get("direct_cache_hit", 0) + found.get("preprocessed_cache_hit", 0),
                           misses=found["cache_miss"])
    if "Misses" in found:
        return CcacheStats(hits=found.get("Hits", 0), misses=found["Misses"])
    return None

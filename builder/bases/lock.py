"""bases.lock: the digest of every base image the matrix uses (pure).

    # comment header
    <reference> <digest | local> <YYYY-MM-DD>

One line per base, sorted by reference, single spaces (a reference holds none). `local` marks a
base that lives only in the local Engine (`builder base create`): its identity is the Engine's
image id, read at build time; that id differs on every machine, so none is committed.
"""

from __future__ import annotations

from collections.abc import Set

import datetime
import re
from dataclasses import dataclass
from pathlib import Path

from builder import grammar
from builder.errors import ConfigError
from builder.names import DIGEST_PATTERN
from builder.util import read_bounded

LOCAL = "local"
HEADER = (
    "# Base images of the matrix, pinned by digest. Written by `builder bases lock`; `builder bases\n"
    "# lock --check` fails when an upstream tag has moved. Builds use the locked digest (FROM\n"
    "# <reference>@<digest>), and the digest is part of every cell's content hash.\n"
    "# <reference> <digest, or 'local' for a base only in the local Engine> <date resolved, UTC>\n"
)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class LockEntry:
    reference: str
    digest: str  # sha256:... or LOCAL
    date: str  # YYYY-MM-DD

    @property
    def local(self) -> bool:
        return self.digest == LOCAL


def parse_lock(text: str, path: str = "bases.lock") -> dict[str, LockEntry]:
    entries: dict[str, LockEntry] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 3:
            raise ConfigError(path, number, f"expected '<reference> <digest> <date>', got {len(fields)} field(s)")
        reference, digest, date = fields
        problem = grammar.image_reference(reference)  # before it reaches a FROM line or a registry request
        if problem:
            raise ConfigError(path, number, problem)
        if digest != LOCAL and not DIGEST_PATTERN.fullmatch(digest):
            raise ConfigError(path, number, f"{reference}: {digest!r} is neither sha256:<64 hex digits> nor 'local'")
        if not _DATE.match(date) or not _real_date(date):
            raise ConfigError(path, number, f"{reference}: date {date!r} is not a YYYY-MM-DD date")
        if reference in entries:
            raise ConfigError(path, number, f"{reference} is locked twice")
        entries[reference] = LockEntry(reference, digest, date)
    return entries


def _real_date(text: str) -> bool:
    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def render_lock(entries: dict[str, LockEntry]) -> str:
    lines = [f"{e.reference} {e.digest} {e.date}\n" for e in sorted(entries.values(), key=lambda e: e.reference)]
    return HEADER + "".join(lines)


def load_lock(path: Path) -> dict[str, LockEntry]:
    """The lock's entries; {} when there is no lock file."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return {}
    data = read_bounded(path, what="lock file")  # a regular file of at most 2 MiB (no FIFO, no /dev/zero)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(str(path), None, "not UTF-8 text") from None
    return parse_lock(text, str(path))


def merge(old: dict[str, LockEntry], resolved: dict[str, str], today: str,
          keep: Set[str] = frozenset()) -> dict[str, LockEntry]:
    """The new lock: `resolved` (reference -> digest or LOCAL), plus the old entries named in keep
    (bases of cells outside the selection). An unmoved digest keeps its date."""
    out = {ref: old[ref] for ref in keep if ref in old}
    for reference, digest in resolved.items():
        previous = old.get(reference)
        date = previous.date if previous is not None and previous.digest == digest else today
        out[reference] = LockEntry(reference, digest, date)
    return out


def stale(lock: dict[str, LockEntry], resolved: dict[str, str | None], path: str) -> list[str]:
    """One line per base whose lock entry no longer holds. resolved: reference -> the digest
    upstream has now, LOCAL for a local-only image, None when upstream no longer has it."""
    problems = []
    for reference in sorted(set(lock) | set(resolved)):
        entry, now = lock.get(reference), resolved.get(reference, "")
        if reference not in resolved:
            problems.append(f"{path}: {reference} is locked but no cell uses it; run `builder bases lock`")
        elif entry is None:
            problems.append(f"{path}: {reference} is used by the matrix but not locked; run `builder bases lock`")
        elif entry.local or now == LOCAL:
            if entry.local != (now == LOCAL):
                now_is = "a local-only image" if now == LOCAL else f"in its registry as {now}"
                problems.append(f"{path}: {reference} is locked as {entry.digest} but is now {now_is}; "
                                "run `builder bases lock`")
        elif now is None:
            problems.append(f"{path}: {reference} (locked at {entry.digest}, {entry.date}) is gone from its "
                            "registry; build it from the mirror (`builder bases mirror`, bases.from_mirror)")
        elif now != entry.digest:
            problems.append(f"{path}: {reference} moved: locked at {entry.digest} ({entry.date}), its registry "
                            f"now has {now}; run `builder bases lock` to rebuild on it")
    return problems

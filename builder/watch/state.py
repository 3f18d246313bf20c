"""What the watch decided, as records in the registry (a `watch-<engine>-<16 hex>` artifact per
upstream release and cell, and per rejected upstream string and cell), so a second run finds every
decision and does nothing new."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol, get_args

from builder.safetext import printable

from .releases import Rejected, Release

# found: discovered, pinned and proposed, not built (no --build); passed / promoted: built, smoke and
# gate passed; regressed: the gate says slower; failing: a smoke check or the build failed;
# rejected: an upstream string failed validation (never built).
Verdict = Literal["found", "passed", "promoted", "regressed", "failing", "rejected"]
VERDICTS: Final[frozenset[str]] = frozenset(get_args(Verdict))
SCHEMA = 1


class Records(Protocol):
    """The part of promotion.store.RecordStore the watch uses."""

    def put_watch(self, tag: str, decision: dict) -> str: ...
    def get_watch(self, tag: str) -> dict | None: ...
    def watch_tags(self) -> list[str]: ...


def decision_tag(engine: str, cell: str, release: Release) -> str:
    """One tag per (cell, release, pin): a re-pinned release (a changed sdist) is news again."""
    return _tag(engine, f"{engine}\n{cell}\n{release.kind}\n{release.label}\n{release.pin}")


def rejection_tag(engine: str, cell: str, rejected: Rejected) -> str:
    """One tag per (cell, rejected string, reason); the string reaches the tag only through the hash."""
    return _tag(engine, f"{engine}\n{cell}\nrejected\n{rejected.kind}\n{rejected.value}\n{rejected.reason}")


def _tag(engine: str, key: str) -> str:
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return f"watch-{re.sub(r'[^A-Za-z0-9_.-]', '_', engine)[:40]}-{digest[:16]}"


def quoted(value: str, limit: int = 64) -> str:
    """A rejected upstream string as the record keeps it: Python's ascii() of its first `limit`
    characters (quoted, every control and non-ASCII character escaped), never the raw string."""
    return ascii(value[:limit]) + ("..." if len(value) > limit else "")


@dataclass(frozen=True, kw_only=True)
class Decision:
    engine: str
    cell: str  # the cell whose known-good the release is measured against
    release: Release
    verdict: Verdict
    detail: str
    decided_at: str
    candidate_cell: str = ""  # the new version's cell id
    proposal: str = ""  # where the proposed matrix went (or "applied to matrix.yaml")
    bisect: dict[str, Any] = field(default_factory=dict)  # the bisect answer's summary and its registry tag
    recheck: dict[str, Any] = field(default_factory=dict)  # the culprit re-check: confirmed or not
    gate: dict[str, Any] = field(default_factory=dict)  # the A/B gate's verdict and interval per level

    @property
    def tag(self) -> str:
        return decision_tag(self.engine, self.cell, self.release)

    def to_dict(self) -> dict[str, Any]:
        r = self.release
        return {"schema": SCHEMA, "engine": self.engine, "cell": self.cell, "candidate_cell": self.candidate_cell,
                "verdict": self.verdict, "detail": self.detail, "decided_at": self.decided_at,
                "release": {"kind": r.kind, "label": r.label, "version": r.version, "pin": r.pin,
                            "source": r.source, "package": r.package, "file": r.filename},
                "proposal": self.proposal, "bisect": dict(self.bisect), "recheck": dict(self.recheck),
                "gate": dict(self.gate)}


@dataclass(frozen=True, kw_only=True)
class Rejection:
    """An upstream string that failed validation, recorded for one watched cell (never built)."""

    engine: str
    cell: str
    rejected: Rejected
    decided_at: str

    @property
    def tag(self) -> str:
        return rejection_tag(self.engine, self.cell, self.rejected)

    def to_dict(self) -> dict[str, Any]:
        """The record, shaped like a Decision's; the bad string only quoted and escaped, with its hash."""
        r = self.rejected
        raw = r.value.encode("utf-8", "surrogatepass")
        return {"schema": SCHEMA, "engine": self.engine, "cell": self.cell, "candidate_cell": "",
                "verdict": "rejected", "detail": printable(r.reason)[:300], "decided_at": self.decided_at,
                "release": {"kind": r.kind, "label": quoted(r.value), "version": "", "pin": "", "source": "",
                            "package": "", "file": "", "value_sha256": hashlib.sha256(raw).hexdigest(),
                            "value_length": len(r.value)},
                "proposal": "", "bisect": {}, "recheck": {}, "gate": {}}

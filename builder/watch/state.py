"""What the watch decided, as records in the registry (a `watch-<engine>-<16 hex>` artifact per
upstream release and cell), so a second run finds every decision and does nothing new."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol, get_args

from .releases import Release

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
    key = hashlib.sha256(f"{engine}\n{cell}\n{release.kind}\n{release.label}\n{release.pin}".encode()).hexdigest()
    return f"watch-{re.sub(r'[^A-Za-z0-9_.-]', '_', engine)[:40]}-{key[:16]}"


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

    @property
    def tag(self) -> str:
        return decision_tag(self.engine, self.cell, self.release)

    def to_dict(self) -> dict[str, Any]:
        r = self.release
        return {"schema": SCHEMA, "engine": self.engine, "cell": self.cell, "candidate_cell": self.candidate_cell,
                "verdict": self.verdict, "detail": self.detail, "decided_at": self.decided_at,
                "release": {"kind": r.kind, "label": r.label, "version": r.version, "pin": r.pin,
                            "source": r.source, "package": r.package, "file": r.filename},
                "proposal": self.proposal, "bisect": dict(self.bisect), "recheck": dict(self.recheck)}

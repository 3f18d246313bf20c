"""The watch's history on the board: `builder watch` decisions read back from the registry, each
validated into a small typed view, newest first and bounded per cell (pure).

A record is data from the registry, not code: every field is checked (a closed verdict, a known
release kind, a pin that is a digest, sha256 or commit, finite numbers) and every text is made
one-line and bounded here; the templates escape it (autoescape). A record that fails costs its own
line in the history and is listed as unreadable, never the board. The board does not import the
watch stage (it comes later): the vocabulary below mirrors builder/watch/state.py's, and a unit test
keeps the two equal.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, cast, get_args

from builder.safetext import shown

WatchVerdict = Literal["found", "passed", "promoted", "regressed", "failing", "rejected"]
WATCH_VERDICTS: Final[tuple[WatchVerdict, ...]] = get_args(WatchVerdict)
ReleaseKind = Literal["pypi", "git", "image"]
RecheckStatus = Literal["confirmed", "not confirmed", "not run"]
GateVerdict = Literal["pass", "regressed", "inconclusive"]
MAX_PER_CELL: Final = 20  # the newest decisions a cell shows
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_HEX = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_COMMIT = re.compile(r"[0-9a-f]{7,64}")


@dataclass(frozen=True, kw_only=True)
class GateLevel:
    """One concurrency level of the A/B gate: the candidate/known-good ratio and its interval."""
    concurrency: int
    verdict: GateVerdict
    ratio: float
    ci_low: float
    ci_high: float
    confidence: float
    pairs: int

    @property
    def interval(self) -> str:
        return (f"c={self.concurrency}: ratio {self.ratio:.3f} [{self.ci_low:.3f}, {self.ci_high:.3f}] "
                f"{100 * self.confidence:.4g}% CI, {self.pairs} pairs")


@dataclass(frozen=True, kw_only=True)
class Culprit:
    """The first-bad commit a bisect named, and whether the re-check in fresh boots reproduced it."""
    commit: str  # the first 12 hex digits
    subject: str
    pr: int | None
    exact: bool  # one commit, not a range of suspects
    status: RecheckStatus
    why: str = ""  # why not confirmed
    metric: str = ""
    steps: int | None = None

    @property
    def confirmed(self) -> bool:
        return self.status == "confirmed"


@dataclass(frozen=True, kw_only=True)
class WatchEntry:
    """One decision of the watch about one upstream release, for the cell it was measured against."""
    record: str  # the registry tag, watch-<engine>-<16 hex>
    cell: str
    candidate_cell: str
    label: str  # the version label; for a rejected string, its quoted and escaped form
    kind: ReleaseKind
    pin: str  # shortened: sha256:<12 hex> for a digest, 12 hex for an sdist sha256 or a commit
    decided_at: str
    verdict: WatchVerdict
    detail: str
    gate_verdict: GateVerdict | Literal[""] = ""  # "" when no gate ran
    gate: tuple[GateLevel, ...] = ()
    culprit: Culprit | None = None
    bisect_error: str = ""  # a bisect that could not run says why


@dataclass(frozen=True, kw_only=True)
class WatchEvidence:
    """What collect.py read: (tag, record) pairs, and one line per record it could not read."""
    records: tuple[tuple[str, Mapping[str, Any]], ...] = ()
    problems: tuple[str, ...] = ()


def text(value: Any, limit: int = 300) -> str:
    """A record's text as the board shows it: one line, control characters escaped, bounded."""
    if value is None:
        return ""
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise TypeError(f"expected text, got {type(value).__name__}")
    line = " ".join(shown(value).split())
    return line if len(line) <= limit else line[:limit - 1] + "…"


def short_pin(pin: Any) -> str:
    """sha256:<12 hex> for an image digest, 12 hex for an sdist sha256 or a commit, "" for none."""
    if pin in ("", None):
        return ""
    if isinstance(pin, str) and _DIGEST.fullmatch(pin):
        return pin[:19]
    if isinstance(pin, str) and _HEX.fullmatch(pin):
        return pin[:12]
    raise ValueError(f"pin {text(pin, 40)!r} is not a digest, a sha256 or a commit")


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{what} is not a finite number")
    return float(value)


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} is not an object")
    return value


def _gate(data: Mapping[str, Any]) -> tuple[GateVerdict | Literal[""], tuple[GateLevel, ...]]:
    if not data:
        return "", ()
    if data.get("verdict") not in get_args(GateVerdict):
        raise ValueError(f"gate.verdict {text(data.get('verdict'), 40)!r} is not pass/regressed/inconclusive")
    levels = data.get("levels") or []
    if not isinstance(levels, list):
        raise ValueError("gate.levels is not a list")
    out = []
    for lv in levels[:16]:
        lv = _mapping(lv, "a gate level")
        if lv.get("verdict") not in get_args(GateVerdict):
            raise ValueError(f"gate level verdict {text(lv.get('verdict'), 40)!r} is not pass/regressed/inconclusive")
        out.append(GateLevel(concurrency=int(_number(lv.get("concurrency"), "concurrency")),
                             verdict=cast(GateVerdict, lv["verdict"]), ratio=_number(lv.get("ratio"), "ratio"),
                             ci_low=_number(lv.get("ci_low"), "ci_low"), ci_high=_number(lv.get("ci_high"), "ci_high"),
                             confidence=_number(lv.get("confidence"), "confidence"),
                             pairs=int(_number(lv.get("pairs", 0), "pairs"))))
    return cast(GateVerdict, data["verdict"]), tuple(out)


def _culprit(bisect: Mapping[str, Any], recheck: Mapping[str, Any]) -> Culprit | None:
    first = _mapping(bisect.get("first_bad"), "bisect.first_bad")
    if not first:
        return None
    sha = first.get("sha")
    if not isinstance(sha, str) or not _COMMIT.fullmatch(sha):
        raise ValueError(f"bisect.first_bad.sha {text(sha, 40)!r} is not a commit id")
    pr = first.get("pr")
    status = recheck.get("status", "not run")
    if status not in get_args(RecheckStatus):
        raise ValueError(f"recheck.status {text(status, 40)!r} is not confirmed / not confirmed / not run")
    steps = bisect.get("steps")
    return Culprit(commit=sha[:12], subject=text(first.get("subject"), 200),
                   pr=pr if isinstance(pr, int) and not isinstance(pr, bool) else None,
                   exact=bisect.get("exact") is True, status=cast(RecheckStatus, status),
                   why=text(recheck.get("why"), 200), metric=text(bisect.get("metric"), 20),
                   steps=steps if isinstance(steps, int) and not isinstance(steps, bool) else None)


def read_entry(tag: str, record: Mapping[str, Any]) -> WatchEntry:
    """One record as the board shows it; ValueError/TypeError naming the first field that is wrong."""
    verdict = record.get("verdict")
    if verdict not in WATCH_VERDICTS:
        raise ValueError(f"verdict {text(verdict, 40)!r} is not one of {', '.join(WATCH_VERDICTS)}")
    cell = record.get("cell")
    if not isinstance(cell, str) or not _SAFE_ID.fullmatch(cell):
        raise ValueError(f"cell {text(cell, 40)!r} is not a cell id")
    candidate = record.get("candidate_cell") or ""
    if not isinstance(candidate, str) or (candidate and not _SAFE_ID.fullmatch(candidate)):
        raise ValueError(f"candidate_cell {text(candidate, 40)!r} is not a cell id")
    decided_at = record.get("decided_at")
    if not isinstance(decided_at, str) or not _TIME.fullmatch(decided_at):
        raise ValueError(f"decided_at {text(decided_at, 40)!r} is not a UTC time stamp")
    release = _mapping(record.get("release"), "release")
    kind = release.get("kind")
    if kind not in get_args(ReleaseKind):
        raise ValueError(f"release.kind {text(kind, 40)!r} is not pypi, git or image")
    bisect = _mapping(record.get("bisect"), "bisect")
    gate_verdict, gate = _gate(_mapping(record.get("gate"), "gate"))
    return WatchEntry(record=text(tag, 80), cell=cell, candidate_cell=candidate, label=text(release.get("label"), 80),
                      kind=cast(ReleaseKind, kind), pin=short_pin(release.get("pin")), decided_at=decided_at,
                      verdict=cast(WatchVerdict, verdict), detail=text(record.get("detail")),
                      gate_verdict=gate_verdict, gate=gate,
                      culprit=_culprit(bisect, _mapping(record.get("recheck"), "recheck")),
                      bisect_error=text(bisect.get("error"), 200))


def watch_history(evidence: WatchEvidence, cell_ids: Collection[str], limit: int = MAX_PER_CELL
                  ) -> tuple[dict[str, tuple[WatchEntry, ...]], dict[str, int], list[str]]:
    """Per cell on the board: its newest `limit` decisions (newest first), how many it has in all,
    and one line per record that could not be read. Records of cells not on this board are left out."""
    problems = list(evidence.problems)
    by_cell: dict[str, list[WatchEntry]] = {}
    for tag, record in evidence.records:
        try:
            entry = read_entry(tag, record)
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError, RecursionError) as exc:
            problems.append(f"watch record {text(tag, 60)}: {text(str(exc), 160) or type(exc).__name__}; not shown")
            continue
        if entry.cell in cell_ids:
            by_cell.setdefault(entry.cell, []).append(entry)
    ordered = {cell: sorted(items, key=lambda e: (e.decided_at, e.record), reverse=True)
               for cell, items in by_cell.items()}
    return ({cell: tuple(items[:limit]) for cell, items in ordered.items()},
            {cell: len(items) for cell, items in ordered.items()}, problems)

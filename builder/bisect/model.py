"""The bisect stage's vocabulary and records (pure: dataclasses, no I/O).

Closed vocabularies are Literal types; every record is frozen and keyword-only, and the ones kept
in the state file round-trip through to_dict / from_dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, get_args

Verdict = Literal["good", "bad", "skip", "inconclusive"]
VERDICTS: Final[frozenset[str]] = frozenset(get_args(Verdict))

Tier = Literal["registry", "upstream-image", "python-overlay", "full-build"]
TIERS: Final[tuple[str, ...]] = get_args(Tier)  # cheapest first

Classification = Literal["python-only", "needs-build"]

ChangeStatus = Literal["A", "M", "D", "T"]  # added, modified, deleted, type changed (renames split: D + A)
CHANGE_STATUSES: Final[frozenset[str]] = frozenset(get_args(ChangeStatus))


@dataclass(frozen=True, kw_only=True)
class FileChange:
    path: str  # relative to the repository root, '/'-separated
    status: ChangeStatus


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """One commit in bisect order: index 0 is the good endpoint, the last one the bad endpoint."""

    index: int
    sha: str
    subject: str
    pr: int | None
    files: tuple[FileChange, ...]  # the commit's own change against its first parent
    classification: Classification
    reason: str  # why needs-build (the first compiled or outside file), or "" when python-only

    @property
    def short(self) -> str:
        return self.sha[:12]


@dataclass(frozen=True, kw_only=True)
class Measurement:
    """What measure() answers for one image against both endpoints."""

    verdict: Verdict
    metric: Mapping[str, float] = field(default_factory=dict)  # e.g. ratio, ci_low, ci_high, tok_s
    samples: int = 0
    note: str = ""


@dataclass(frozen=True, kw_only=True)
class MadeImage:
    """What make_image() answers: a digest, or the reason there is none (a skip)."""

    digest: str | None
    built: bool = False  # True when something was built (overlay cell, python overlay, full build)
    patches: tuple[str, ...] = ()  # patch ids applied at this step
    skip_reason: str | None = None  # patch CONFLICT, build failure, ...


@dataclass(frozen=True, kw_only=True)
class StepRecord:
    """One tested step: kept in the state file and shown in the report."""

    step: int
    index: int
    sha: str
    attempt: int
    tier: Tier | None  # None when the image came from an earlier step of this bisect
    digest: str | None
    verdict: Verdict
    metric: Mapping[str, float] = field(default_factory=dict)
    samples: int = 0
    patches: tuple[str, ...] = ()
    reason: str = ""  # skip reason or the measurement's note
    built: bool = False
    measured: bool = False  # measure() ran at this step
    cached: bool = False  # the verdict came from the step cache (no measurement)

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "index": self.index, "sha": self.sha, "attempt": self.attempt,
                "tier": self.tier, "digest": self.digest, "verdict": self.verdict,
                "metric": dict(self.metric), "samples": self.samples, "patches": list(self.patches),
                "reason": self.reason, "built": self.built, "measured": self.measured,
                "cached": self.cached}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StepRecord:
        if d["verdict"] not in VERDICTS or (d["tier"] is not None and d["tier"] not in TIERS):
            raise ValueError(f"unknown verdict or tier in step {d.get('step')}")
        return cls(step=int(d["step"]), index=int(d["index"]), sha=str(d["sha"]), attempt=int(d["attempt"]),
                   tier=d["tier"], digest=d["digest"], verdict=d["verdict"],
                   metric={str(k): float(v) for k, v in d.get("metric", {}).items()},
                   samples=int(d.get("samples", 0)), patches=tuple(d.get("patches", ())),
                   reason=str(d.get("reason", "")), built=bool(d.get("built", False)),
                   measured=bool(d.get("measured", False)), cached=bool(d.get("cached", False)))


@dataclass(frozen=True, kw_only=True)
class BisectResult:
    cell: str
    candidates: tuple[Candidate, ...]
    first_bad: Candidate
    last_good: Candidate
    suspects: tuple[Candidate, ...]  # skipped between last_good and first_bad: the culprit may be one of them
    skipped: tuple[Candidate, ...]  # every candidate whose final verdict is skip
    steps: tuple[StepRecord, ...]

    @property
    def builds(self) -> int:
        return sum(1 for s in self.steps if s.built)

    @property
    def measured(self) -> int:
        return sum(1 for s in self.steps if s.measured)

    @property
    def exact(self) -> bool:
        return not self.suspects

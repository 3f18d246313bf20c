"""One watch run (pure core): for each watched cell, the releases its engine's matrix lacks, each
decided once: skipped when the registry already holds its decision, else evaluated, recorded and
notified. A rejected upstream string is decided the same way (recorded and notified once, never
evaluated). Evaluation (build, smoke, gate, bisect) is injected; the CLI chooses it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .releases import Rejected, Release, newer_than, rejections_newer_than
from .state import Decision, Records, Rejection, Verdict, decision_tag


@dataclass(frozen=True, kw_only=True)
class Target:
    """A cell the watch measures new releases of its engine against."""

    engine: str
    cell: str  # the known-good cell, e.g. vllm-0.32.0-cpu
    known_label: str  # its version label
    known_versions: tuple[str, ...]  # every version (PEP 440) the matrix has for the engine
    known_torch: str | None = None  # the known-good's torch: a release's proposal keeps it unless its wheel pins another
    platform: str = "linux/amd64"  # the cell's, for the markers of a wheel's requirements

    def candidate_cell(self, label: str) -> str:
        return self.cell.replace(f"-{self.known_label}-", f"-{label}-", 1) if f"-{self.known_label}-" in self.cell \
            else self.cell.replace(self.known_label, label, 1)


@dataclass(frozen=True, kw_only=True)
class Outcome:
    verdict: Verdict
    detail: str
    proposal: str = ""
    bisect: dict[str, Any] = field(default_factory=dict)
    recheck: dict[str, Any] = field(default_factory=dict)
    gate: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class RunReport:
    decided: tuple[Decision, ...]
    already: tuple[str, ...]  # tags of releases (and rejections) decided by an earlier run
    rejected: tuple[Rejection, ...]  # rejected upstream strings recorded by this run


def run_watch(targets: list[Target], found: dict[str, list[Release | Rejected]], records: Records,
              evaluate: Callable[[Target, Release], Outcome], notify: Callable[[dict[str, Any]], None],
              now: Callable[[], str]) -> RunReport:
    decided: list[Decision] = []
    already: list[str] = []
    rejected: list[Rejection] = []
    existing = set(records.watch_tags())
    for target in targets:
        offered = found.get(target.cell, found.get(target.engine, []))  # per cell (what its arch installs) or engine
        bad = [r for r in offered if isinstance(r, Rejected)]
        for item in rejections_newer_than(bad, list(target.known_versions)):
            rejection = Rejection(engine=target.engine, cell=target.cell, rejected=item, decided_at=now())
            if rejection.tag in existing:
                already.append(rejection.tag)
                continue
            records.put_watch(rejection.tag, rejection.to_dict())  # recorded before told, as a decision is
            existing.add(rejection.tag)
            notify({**rejection.to_dict(), "record": rejection.tag})
            rejected.append(rejection)
        releases = [r for r in offered if isinstance(r, Release)]
        for release in newer_than(releases, list(target.known_versions)):
            tag = decision_tag(target.engine, target.cell, release)
            if tag in existing:
                already.append(tag)
                continue
            outcome = evaluate(target, release)
            decision = Decision(engine=target.engine, cell=target.cell, release=release, verdict=outcome.verdict,
                                detail=outcome.detail, decided_at=now(),
                                candidate_cell=target.candidate_cell(release.label), proposal=outcome.proposal,
                                bisect=outcome.bisect, recheck=outcome.recheck, gate=outcome.gate)
            records.put_watch(tag, decision.to_dict())  # recorded before anyone is told: a rerun never re-notifies
            existing.add(tag)
            notify({**decision.to_dict(), "record": tag})
            decided.append(decision)
    return RunReport(decided=tuple(decided), already=tuple(already), rejected=tuple(rejected))

"""Deciding one release when it is built and tested: the proposal, then the candidate image smoke-tested
and gated against the cell's known-good, then, when it regressed or failed, its culprit. The image,
the smoke run and the bisect are injected (the CLI wires builder/pipeline.py and the bisect session)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from builder.errors import BuilderError
from builder.measure.gate import GateResult
from builder.proof.report import SmokeReport

from .culprit import Culprit
from .evaluate import Proposer
from .loop import Outcome, Target
from .releases import Release
from .state import Verdict

Metric = Literal["throughput", "golden", "checks"]


def classify(report: SmokeReport, promoted: bool) -> tuple[Verdict, str]:
    """passed/promoted, regressed (the A/B gate says slower), or failing (a check failed)."""
    failed = [c for c in report.checks if c.status == "fail"]
    if not failed:
        return ("promoted" if promoted else "passed"), "every check passed" + (
            f"; {report.gate.render().splitlines()[0]}" if report.gate else "")
    gate_only = slower_than_allowed(report.gate) and all(c.name in ("throughput", "gate", "sweep") for c in failed)
    evidence = "; ".join(f"{c.name}: {c.evidence[:320]}" for c in failed)
    return ("regressed" if gate_only else "failing"), evidence


def slower_than_allowed(gate: GateResult | None) -> bool:
    """The gate said regressed, or stayed inconclusive with a level's whole interval below its bound: a large
    slowdown measured too noisily for the gate's own verdict rule, which the gate never accepts either
    (measure/perf.gate_verdict); seen on a busy 2-core runner: c=1 ratio 0.065 [0.042, 0.101]."""
    return gate is not None and (gate.verdict == "regressed"
                                 or any(lv.ci_high < 1 - lv.threshold for lv in gate.levels))


def gate_summary(gate: GateResult | None) -> dict[str, Any]:
    """The A/B gate as the record keeps it: its verdict and, per level, the ratio and its interval."""
    if gate is None:
        return {}
    return {"verdict": gate.verdict,
            "levels": [{k: v for k, v in lv.to_dict().items() if k not in ("baseline_tps", "candidate_tps")}
                       for lv in gate.levels]}


def bisect_metric(report: SmokeReport) -> Metric:
    """How the bisect tells good from bad: the gate's throughput, the greedy outputs, or the checks."""
    failed = {c.name for c in report.checks if c.status == "fail"}
    if failed & {"golden", "golden_scores"}:
        return "golden"
    if failed <= {"gate", "sweep"}:
        return "throughput"
    return "checks"


@dataclass(frozen=True, kw_only=True)
class Judge:
    proposer: Proposer
    # (reference, digest) of the candidate: the upstream image, or the proposal's candidate cell built; None: not
    # built here (no --build, or a release kind the runner cannot build): it stays `found`, proposed
    image_of: Callable[[Target, Release, Path], tuple[str, str] | None]
    smoke: Callable[[Target, Release, Path, str, str], SmokeReport]
    culprit: Callable[[Target, Release, Metric], Culprit | None] | None = None  # None: no bisect
    promote: bool = False
    # what the release's own file pins for its version entry (a wheel's torch), read before it is proposed
    pins: Callable[[Target, Release], Mapping[str, str]] | None = None

    def __call__(self, target: Target, release: Release) -> Outcome:
        try:
            pins = self.pins(target, release) if self.pins else {}
        except BuilderError as exc:
            return Outcome(verdict="failing", detail=f"not tested: {str(exc).splitlines()[0]}")
        proposed, problem = self.proposer.write(target, release, pins)
        if proposed is None:
            return Outcome(verdict="failing", detail=problem)
        try:
            made = self.image_of(target, release, proposed)
            if made is None:
                return Outcome(verdict="found", detail=f"pinned and proposed ({proposed}); build it with `builder build "
                               f"--matrix {proposed} --cell {target.candidate_cell(release.label)} --smoke`",
                               proposal=str(proposed))
            image, digest = made
            report = self.smoke(target, release, proposed, image, digest)
        except BuilderError as exc:
            return Outcome(verdict="failing", detail=f"not tested: {str(exc).splitlines()[0]}", proposal=str(proposed))
        verdict, detail = classify(report, self.promote)
        outcome: dict[str, Any] = {"verdict": verdict, "detail": f"{detail} (image {image})",
                                   "proposal": str(proposed), "gate": gate_summary(report.gate)}
        if verdict in ("regressed", "failing") and self.culprit is not None:
            found = self.culprit(target, release, bisect_metric(report))
            if found is not None:
                outcome |= {"bisect": found.bisect, "recheck": found.recheck}
        return Outcome(**outcome)

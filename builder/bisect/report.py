"""The bisect answer as text and JSON (pure).

Text, for the terminal:

    bisect vllm-0.34.0.dev0-cpu: 19 candidates, good 1a2b3c4d5e6f .. bad 9f8e7d6c5b4a
    first bad: 0f3e2a1b4c5d  Reorder the step loop (#38152)  PR #38152
    last good: 77aa01bb02cc  Tidy the scheduler docs
    skipped:   none
    5 steps (5 measured, 0 cached), 4 builds (3 python-overlay, 1 full-build)
    step  candidate          try tier            verdict  metric                     patches
       1  10 5e6f7a8b9c0d      1 python-overlay  good     ratio=0.998 ...            p1,p2

JSON: `to_json(result)`, a dict with schema 1 (stored beside the cell's records).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .model import BisectResult, Candidate, StepRecord

SCHEMA = 1


def _candidate(c: Candidate) -> dict[str, Any]:
    return {"index": c.index, "sha": c.sha, "subject": c.subject, "pr": c.pr,
            "classification": c.classification, "files": [f.path for f in c.files]}


def to_json(result: BisectResult) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "cell": result.cell,
        "good": result.candidates[0].sha,
        "bad": result.candidates[-1].sha,
        "candidates": len(result.candidates),
        "first_bad": _candidate(result.first_bad),
        "last_good": _candidate(result.last_good),
        "exact": result.exact,
        "suspects": [_candidate(c) for c in result.suspects],
        "skipped": [_candidate(c) for c in result.skipped],
        "steps_count": len(result.steps),
        "measured": result.measured,
        "builds": result.builds,
        "steps": [s.to_dict() for s in result.steps],
    }


def _line(c: Candidate) -> str:
    pr = f"  PR #{c.pr}" if c.pr is not None else ""
    return f"{c.short}  {c.subject}{pr}"


def _metric(step: StepRecord) -> str:
    if not step.metric:
        return step.reason[:40] if step.verdict == "skip" else "-"
    return " ".join(f"{k}={v:.4g}" for k, v in step.metric.items())


def _tiers(result: BisectResult) -> str:
    counts = Counter(s.tier for s in result.steps if s.built and s.tier)
    return ", ".join(f"{n} {tier}" for tier, n in sorted(counts.items()))


def render_text(result: BisectResult) -> str:
    cands = result.candidates
    lines = [f"bisect {result.cell}: {len(cands)} candidates, good {cands[0].short} .. bad {cands[-1].short}"]
    if result.suspects:
        lines.append(f"first bad: one of {len(result.suspects) + 1} (the ones between were skipped):")
        lines += [f"  {_line(c)}" for c in (*result.suspects, result.first_bad)]
    else:
        lines.append(f"first bad: {_line(result.first_bad)}")
    lines.append(f"last good: {_line(result.last_good)}")
    skipped = ", ".join(c.short for c in result.skipped) or "none"
    lines.append(f"skipped:   {skipped}")
    cached = sum(1 for s in result.steps if s.cached)
    tiers = _tiers(result)
    lines.append(f"{len(result.steps)} steps ({result.measured} measured, {cached} cached), "
                 f"{result.builds} builds" + (f" ({tiers})" if tiers else ""))
    lines.append(f"{'step':>4}  {'candidate':<16} {'try':>3} {'tier':<15} {'verdict':<13} {'metric':<34} patches")
    for s in result.steps:
        tier = s.tier or "(same image)"
        lines.append(f"{s.step:>4}  {s.index:>3} {s.sha[:12]} {s.attempt:>3} {tier:<15} {s.verdict:<13} "
                     f"{_metric(s):<34} {','.join(s.patches) or '-'}")
    return "\n".join(lines) + "\n"

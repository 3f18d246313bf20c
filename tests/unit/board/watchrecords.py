"""Watch records as `builder watch` writes them, made with the watch's own Decision, Rejection,
gate summary and bisect summary shapes (builder/watch/), for the board's tests: a release that
regressed (gate interval, culprit confirmed), one that failed with a culprit not confirmed, one that
passed, one found, and a rejected upstream string."""

from __future__ import annotations

from typing import Any

from builder.measure.gate import GateResult, GateSettings, compare_level
from builder.watch.judge import gate_summary
from builder.watch.releases import Rejected, Release, check_release
from builder.watch.state import Decision, Rejection

CELL = "vllm-0.32.0-cpu"
DIGEST = "sha256:" + "16d915985d89" + "0" * 52
SHA = "3f2a1b9c0d1e" + "7" * 28
HOSTILE_SUBJECT = 'Use the fast argmax <script>alert("x")</script><img src=x onerror=alert(2)> (#3131)'


def release(label: str, kind: str = "image", pin: str = DIGEST) -> Release:
    got = check_release("vllm", kind, label, label, pin, "127.0.0.1:5000/upstream/vllm-cpu",  # type: ignore[arg-type]
                        package=f"127.0.0.1:5000/upstream/vllm-cpu:v{label}" if kind == "image" else "vllm-cpu")
    assert isinstance(got, Release), got
    return got


def gate(candidate_scale: float) -> dict[str, Any]:
    base = [200.0, 201.0, 199.0, 200.5, 198.0, 202.0]
    cand = [b * candidate_scale * (1 + 0.002 * (i % 3)) for i, b in enumerate(base)]
    return gate_summary(GateResult.of([compare_level(base, cand, concurrency=1)], GateSettings()))


def bisect(subject: str, *, exact: bool = True) -> dict[str, Any]:
    """culprit.summary()'s shape: the answer's first-bad and last-good commits and where it is stored."""
    return {"stored": f"127.0.0.1:5000/llm-factory/images-records:bisect-{CELL}-6129ce35f0838de1",
            "metric": "golden", "exact": exact, "steps": 3, "result_file": "/tmp/x/result.json",
            "first_bad": {"index": 3, "sha": SHA, "subject": subject, "pr": 3131, "classification": "python",
                          "files": ["vllm/sampler.py"]},
            "last_good": {"index": 2, "sha": "2" * 40, "subject": "c2", "pr": 1002, "classification": "python",
                          "files": []},
            "suspects": []}


def decisions(cell: str = CELL, subject: str = HOSTILE_SUBJECT) -> list[tuple[str, dict[str, Any]]]:
    """(tag, record) as the watch stores them, oldest first."""
    made = [
        Decision(engine="vllm", cell=cell, release=release("0.33.0", "pypi", "a" * 64), verdict="found",
                 detail="pinned and proposed", decided_at="2026-12-01T05:41:00Z", candidate_cell="vllm-0.33.0-cpu"),
        Decision(engine="vllm", cell=cell, release=release("0.33.2"), verdict="passed",
                 detail="every check passed", decided_at="2026-12-02T05:41:00Z", candidate_cell="vllm-0.33.2-cpu",
                 gate=gate(0.99)),
        Decision(engine="vllm", cell=cell, release=release("0.33.4"), verdict="failing",
                 detail="golden: prompt 'a' differs", decided_at="2026-12-02T17:00:00Z",
                 candidate_cell="vllm-0.33.4-cpu", bisect=bisect("Refactor the scheduler (#3000)", exact=False),
                 recheck={"status": "not confirmed", "why": "the bisect named suspects, not one commit"}),
        Decision(engine="vllm", cell=cell, release=release("0.33.5"), verdict="regressed",
                 detail="gate: regressed by 19.8% (image 127.0.0.1:5000/upstream/vllm-cpu@" + DIGEST + ")",
                 decided_at="2026-12-03T05:41:00Z", candidate_cell="vllm-0.33.5-cpu", gate=gate(0.8),
                 bisect=bisect(subject), recheck={"status": "confirmed", "boots": 2}),
    ]
    out: list[tuple[str, dict[str, Any]]] = [(d.tag, d.to_dict()) for d in made]
    bad = Rejected(engine="vllm", kind="pypi", value="0.34.0<b>\x1b[31m\nRUN evil",
                   reason="'0.34.0<b>\\x1b[31m\\nRUN evil' is not a version label")
    rejection = Rejection(engine="vllm", cell=cell, rejected=bad, decided_at="2026-12-03T06:00:00Z")
    out.append((rejection.tag, rejection.to_dict()))
    return out

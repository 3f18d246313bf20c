"""The board renders every record it can and lists the ones it cannot, one line each; what a server
or a record says reaches the HTML escaped by the template engine; a float that overflows the chart
does not break it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from builder.board.assemble import build_board
from builder.board.collect import collect_evidence
from builder.board.model import BuiltImage, CellEvidence
from builder.board.render import render_site
from builder.errors import StepFailed
from tests.unit.board import synthetic as syn

INJECTED = '<script>alert(1)</script><img src=x onerror=alert(2)>'
CELL = "vllm-0.20.2-cu130-sm_121a"  # known-good with a sweep history in the synthetic registry


def _board(evidence: dict[str, CellEvidence]):
    cells, excluded = syn.matrix()
    return build_board(cells=cells, excluded=excluded, evidence=evidence, image_repo=syn.REPO,
                       generated_at="2026-12-01T00:00:00Z", arch_order=("sm_90", "sm_120", "sm_121a", "cpu"))


def _with(cell: str, **changes: Any) -> dict[str, CellEvidence]:
    ev = syn.evidence()
    base = ev[cell]
    ev[cell] = CellEvidence(record=changes.get("record", base.record), latest=changes.get("latest", base.latest),
                            reports=changes.get("reports", base.reports))
    return ev


@pytest.mark.parametrize("label, record", [
    ("no digest", {"image": "x"}),
    ("patches of the wrong type", {**syn.record(CELL, "a4", "2026-11-28T09:00:00Z", []), "patches": [1, 2]}),
    ("history of the wrong type", {**syn.record(CELL, "a4", "2026-11-28T09:00:00Z", []), "history": [1, "x"]}),
    ("smoke summary of the wrong type", {**syn.record(CELL, "a4", "2026-11-28T09:00:00Z", []), "smoke_summary": [1]}),
])
def test_a_malformed_record_costs_its_cell_not_the_board(label, record):
    board = _board(_with(CELL, record=record))
    site = render_site(board)
    assert len([c for c in board.cells]) == len(syn.board().cells)  # every cell is still on the board
    assert len(board.unreadable) == 1 and board.unreadable[0].startswith(f"{CELL}: ") and "\n" not in board.unreadable[0]
    assert "could not read (1)" in site["index.html"]
    others = [c for c in board.cells if c.id != CELL and c.state == "known-good"]
    assert others, "the other known-good cells keep their records"


def test_an_overflowing_float_does_not_break_the_chart():
    rates = {1: 1e308, 2: float("inf"), 4: 654.0}
    record = syn.record(CELL, "a4", "2026-11-28T09:00:00Z", [syn.entry("a3", "2026-11-20T09:00:00Z", rates=syn.GOOD)],
                        rates=rates)
    board = _board(_with(CELL, record=record, reports={}))
    page = render_site(board)[f"cells/{CELL}.html"]
    assert "inf" not in page.lower().replace("info", "") and "nan" not in page.lower().split("<svg")[-1][:20000]
    assert "<svg" in page  # the chart is drawn from the numbers that are numbers


def test_server_evidence_reaches_the_html_escaped():
    reports = {syn.digest("a4"): syn.report(CELL, "a4", passed=False, rates=syn.GOOD)}
    for check in reports[syn.digest("a4")]["checks"]:
        check["evidence"] = INJECTED
    reports[syn.digest("a4")]["model"] = INJECTED
    board = _board(_with(CELL, reports=reports))
    site = render_site(board)
    for name, text in site.items():
        if name.endswith(".html"):
            assert "<script>alert" not in text and "<img src=x" not in text, name
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in site[f"cells/{CELL}.html"]


class _Source:
    """A RecordSource whose registry holds unreadable things for one cell (a real registry cannot be
    made to fail per record on demand; the reading code is the real collect_evidence)."""

    def __init__(self, bad: str):
        self.ev = syn.evidence()
        self.bad = bad

    def known_good(self, cell_id: str):
        if cell_id == CELL and self.bad == "record":
            raise StepFailed("registry 127.0.0.1:5000: known-good record is not JSON")
        if cell_id == CELL and self.bad == "history":
            rec = dict(self.ev[cell_id].record or {})
            rec["history"] = [{"digest": "../../etc/passwd"}, {"digest": syn.digest("a3")}]
            return rec
        return self.ev[cell_id].record if cell_id in self.ev else None

    def smoke_report(self, digest: str):
        if self.bad == "report":
            raise ValueError("nested too deep")
        return next((r for e in self.ev.values() for d, r in e.reports.items() if d == digest), None)

    def newest_image(self, cell_id: str):
        return self.ev[cell_id].latest if cell_id in self.ev else None


@pytest.mark.parametrize("bad, needle", [("record", "known-good record is unreadable"),
                                         ("history", "not digests"), ("report", "smoke report of")])
def test_collect_lists_what_it_cannot_read_and_goes_on(bad, needle):
    cells, _ = syn.matrix()
    evidence = collect_evidence(_Source(bad), [c.id for c in cells])
    problems = [p for e in evidence.values() for p in e.problems]
    assert problems and all(needle in p or bad == "report" for p in problems), problems
    assert any(needle in p for p in problems)
    board = _board(evidence)
    assert set(board.unreadable) == set(problems)
    assert all("\n" not in line for line in board.unreadable)

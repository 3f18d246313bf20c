"""The watch's history on the board: records the watch writes (tests/unit/board/watchrecords.py makes
them with builder/watch/'s own Decision and Rejection) read into the typed view, newest first and
bounded; a malformed record costs its own line; what upstream wrote reaches the pages escaped."""

from __future__ import annotations

import json
import math
from typing import get_args

import pytest

from builder.board.assemble import build_board
from builder.board.collect import collect_watch
from builder.board.render import render_site
from builder.board.watchlog import MAX_PER_CELL, WATCH_VERDICTS, WatchEvidence, read_entry, watch_history
from builder.watch.state import VERDICTS, Verdict
from tests.unit.board import synthetic as syn
from tests.unit.board import watchrecords as wr

CELL = wr.CELL  # vllm-0.32.0-cpu, a cell of the synthetic matrix
INJECTED = ("<script>alert", "<img src=x", "<b>", "\x1b")


def _board(records, problems=()):
    cells, excluded = syn.matrix()
    return build_board(cells=cells, excluded=excluded, evidence=syn.evidence(), image_repo=syn.REPO,
                       generated_at="2026-12-03T07:00:00Z", arch_order=("sm_90", "sm_120", "sm_121a", "cpu"),
                       watch=WatchEvidence(records=tuple(records), problems=tuple(problems)))


def test_the_vocabulary_is_the_watchs():
    assert set(WATCH_VERDICTS) == set(VERDICTS) == set(get_args(Verdict))


def test_a_regressed_release_shows_its_interval_and_its_confirmed_culprit():
    tag, record = wr.decisions()[3]
    entry = read_entry(tag, record)
    assert (entry.verdict, entry.label, entry.kind, entry.pin) == ("regressed", "0.33.5", "image", wr.DIGEST[:19])
    assert entry.candidate_cell == "vllm-0.33.5-cpu" and entry.decided_at == "2026-12-03T05:41:00Z"
    [level] = entry.gate
    assert entry.gate_verdict == "regressed" and level.ci_high < 0.95 and level.ci_low < level.ratio < level.ci_high
    assert level.interval.startswith(f"c=1: ratio {level.ratio:.3f} [{level.ci_low:.3f}, {level.ci_high:.3f}] 95% CI")
    culprit = entry.culprit
    assert culprit is not None and culprit.confirmed and culprit.exact
    assert (culprit.commit, culprit.pr, culprit.steps, culprit.metric) == (wr.SHA[:12], 3131, 3, "golden")
    assert culprit.subject == wr.HOSTILE_SUBJECT  # kept as text; the template escapes it


def test_a_rejected_string_is_shown_quoted_and_the_others_by_kind():
    entries = {e.verdict: e for e in (read_entry(t, r) for t, r in wr.decisions())}
    rejected = entries["rejected"]
    assert rejected.pin == "" and rejected.culprit is None and rejected.label.startswith("'0.34.0<b>\\x1b")
    assert "\x1b" not in rejected.label and "\n" not in rejected.label
    assert entries["found"].pin == "a" * 12 and entries["found"].gate == ()
    assert entries["failing"].culprit is not None and entries["failing"].culprit.status == "not confirmed"
    assert not entries["failing"].culprit.exact


def test_newest_first_bounded_per_cell_and_other_cells_left_out():
    many = []
    for n in range(MAX_PER_CELL + 5):
        tag, record = wr.decisions()[0]
        many.append((f"{tag[:-2]}{n:02d}", {**record, "decided_at": f"2026-11-{1 + n:02d}T00:00:00Z"}))
    other = [(t, {**r, "cell": "vllm-9.9.9-cpu"}) for t, r in wr.decisions()]
    shown, totals, problems = watch_history(WatchEvidence(records=tuple(many + other)), {CELL})
    assert problems == [] and set(shown) == {CELL} and totals[CELL] == MAX_PER_CELL + 5
    stamps = [e.decided_at for e in shown[CELL]]
    assert len(stamps) == MAX_PER_CELL and stamps == sorted(stamps, reverse=True) and stamps[0] == "2026-11-25T00:00:00Z"


@pytest.mark.parametrize("field, value, why", [
    ("verdict", "pwned", "verdict 'pwned' is not one of"),
    ("cell", "../../etc", "is not a cell id"),
    ("decided_at", "<b>yesterday</b>", "is not a UTC time stamp"),
    ("release", {"kind": "rpm", "label": "1", "pin": ""}, "release.kind"),
    ("release", {"kind": "image", "label": "1", "pin": "sha256:xyz"}, "is not a digest"),
    ("gate", {"verdict": "regressed", "levels": [{"verdict": "regressed", "concurrency": 1, "ratio": math.nan,
                                                   "ci_low": 0.7, "ci_high": 0.8, "confidence": 0.95}]},
     "ratio is not a finite number"),
    ("bisect", {"first_bad": {"sha": "$(rm -rf /)", "subject": "x"}}, "is not a commit id"),
    ("gate", {"verdict": "<i>fine</i>", "levels": []}, "gate.verdict"),
    ("recheck", {"status": "<b>sure</b>"}, "recheck.status"),
    ("bisect", ["not", "an", "object"], "bisect is not an object"),
])
def test_a_malformed_record_costs_its_line_not_the_history(field, value, why):
    records = wr.decisions()
    tag, record = records[3]
    records[3] = (tag, {**record, field: value})
    shown, totals, problems = watch_history(WatchEvidence(records=tuple(records)), {CELL})
    assert totals[CELL] == len(records) - 1  # the others are all shown
    [line] = problems
    assert line.startswith(f"watch record {tag}: ") and why in line and "\n" not in line


def test_the_pages_and_board_json_show_the_history_escaped():
    board = _board(wr.decisions())
    cell = next(c for c in board.cells if c.id == CELL)
    assert [e.verdict for e in cell.watch] == ["rejected", "regressed", "failing", "passed", "found"]
    site = render_site(board)
    page, index = site[f"cells/{CELL}.html"], site["index.html"]
    for name, text in site.items():
        if name.endswith(".html"):
            for bad in INJECTED:
                assert bad not in text, (name, bad)
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page and 'id="watch-history"' in page
    assert page.count('data-verdict="') == 5 and 'data-status="confirmed"' in page
    assert f"<code class=\"commit\">{wr.SHA[:12]}</code>" in page and "95% CI" in page
    failing = page.split('data-verdict="failing"')[1].split("</tr>")[0]
    assert "suspects, the last:" in failing and 'data-status="not confirmed"' in failing  # not named a culprit
    assert 'id="watch-summary"' in index and f'<tr data-cell="{CELL}" data-verdict="rejected">' in index
    assert "watch: &#39;0.34.0&lt;b&gt;" in index  # the grid cell's line, escaped
    assert '<td class="counts">5 (1 failing, 1 found, 1 passed, 1 regressed, 1 rejected)</td>' in index
    data = json.loads(site["board.json"])
    [shown] = [c for c in data["cells"] if c["id"] == CELL]
    assert shown["watch_total"] == 5 and shown["watch"][1]["culprit"]["status"] == "confirmed"
    assert shown["watch"][1]["gate"][0]["ci_high"] < 0.95


def test_a_cell_without_history_says_so_and_an_unreadable_record_is_listed():
    board = _board([("watch-vllm-0000000000000000", {"verdict": "??"})], problems=("watch record x is unreadable",))
    assert len(board.unreadable) == 2
    site = render_site(board)
    assert "No upstream release decided yet" in site["index.html"] and "could not read (2)" in site["index.html"]
    assert "No upstream release decided against this cell yet" in site[f"cells/{CELL}.html"]


class _Registry:
    """A WatchSource over a dict (the real one, StoreSource over a registry, runs in
    tests/integration/test_board_watch.py)."""

    def __init__(self, records):
        self.records = dict(records)

    def watch_tags(self):
        return sorted(self.records)

    def watch_record(self, tag):
        if self.records[tag] is None:
            from builder.errors import StepFailed
            raise StepFailed(f"127.0.0.1:5000/x-records:{tag} is not a JSON watch decision")
        return self.records[tag]


def test_collect_reads_what_it_can_and_says_how_many_it_left():
    records = dict(wr.decisions())
    records["watch-vllm-ffffffffffffffff"] = None
    got = collect_watch(_Registry(records))
    assert len(got.records) == 5 and len(got.problems) == 1 and "not a JSON watch decision" in got.problems[0]
    capped = collect_watch(_Registry(dict(wr.decisions())), limit=2)
    assert len(capped.records) == 2 and capped.problems == ("5 watch records in the registry; the board read 2 of them",)

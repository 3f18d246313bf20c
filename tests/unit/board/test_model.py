"""The board model from plain inputs (pure)."""

import pytest

from builder.board.assemble import build_board, history, read_sweep
from builder.board.model import CELL_STATES, BuiltImage, CellEvidence, CellInput, ExcludedInput
from tests.unit.board import synthetic as syn


def test_every_cell_has_the_expected_state():
    board = syn.board()
    cells, excluded = syn.matrix()
    ids = {e.id for e in excluded}
    assert {c.id for c in board.cells} == {c.id for c in cells} | ids
    for cell in board.cells:
        assert cell.state == syn.expected_state(cell.id, ids), cell.id
    assert set(board.counts()) == set(CELL_STATES) and all(board.counts().values())


def test_failed_smoke_names_the_check_and_keeps_the_known_good_image():
    cell = {c.id: c for c in syn.board().cells}["vllm-0.33.0-cu130-sm_121a"]
    assert cell.failed_check == "throughput" and cell.label == "smoke failed: throughput"
    assert cell.known_good and cell.known_good.digest == syn.digest("c1")
    assert cell.sweep[0].decode_tps == syn.SLOW[1]  # the last smoke's table: the failed image
    assert cell.known_good_sweep[0].decode_tps == syn.GOOD[1]  # the pullable image's numbers


def test_excluded_cells_carry_reason_and_line():
    cell = {c.id: c for c in syn.board().cells}["vllm-0.11.0-cu130-sm_121a"]
    assert cell.state == "excluded" and "0.16.0 or later" in cell.reason and cell.rule_line == 112


def test_history_is_oldest_first_with_regressions_marked():
    cell = {c.id: c for c in syn.board().cells}["vllm-0.20.2-cu130-sm_121a"]
    assert [p.digest for p in cell.history] == [syn.digest(n) for n in ("a1", "a2", "a3", "a4")]
    assert [len(p.regressions) for p in cell.history] == [0, 0, 4, 0]
    drop = cell.history[2].regression_at(2)
    assert drop and drop.previous_tps == 342.0 and drop.change == pytest.approx(299 / 342 - 1, abs=1e-4)
    assert cell.concurrencies == (1, 2, 4, 8)


def test_a_legacy_number_is_c1_and_never_compared_with_a_sweep():
    cell = {c.id: c for c in syn.board().cells}["vllm-0.20.2-cu130-sm_121a"]
    first, second = cell.history[0], cell.history[1]
    assert [(lv.concurrency, lv.measure) for lv in first.levels] == [(1, "legacy")]
    assert second.levels[0].measure == "sweep" and not second.regressions  # 190.2 legacy -> 198.3 sweep


def test_old_records_with_only_single_numbers():
    cell = {c.id: c for c in syn.board().cells}["vllm-0.32.0-cpu"]
    assert [p.rate(1) for p in cell.history] == [40.0, 41.0, 41.5]
    assert cell.sweep == (read_sweep({"throughput_tps": 41.5})[0],)
    assert cell.regression_threshold == 0.5  # the cell's own threshold


def test_legacy_drop_is_a_regression_among_legacy_points():
    record = syn.record("vllm-1.0-cpu", "n3", "2026-11-03T00:00:00Z",
                        [syn.entry("n2", "2026-11-02T00:00:00Z", tps=100.0)], tps=80.0)
    points = history(record, {}, 0.05)
    assert points[1].regressions and points[1].regressions[0].change == pytest.approx(-0.2)


def test_a_history_digest_report_with_a_sweep_enriches_a_legacy_entry():
    record = syn.record("vllm-1.0-cpu", "n2", "2026-11-02T00:00:00Z", [syn.entry("n1", "2026-11-01T00:00:00Z", tps=90.0)],
                        rates=syn.GOOD)
    points = history(record, {syn.digest("n1"): syn.report("x", "n1", rates=syn.SLOW)}, 0.05)
    assert points[0].rate(8) == syn.SLOW[8] and points[1].regressions == ()


def test_sweep_from_a_check_named_sweep():
    report = {"checks": [{"name": "sweep", "status": "pass", "data": syn.sweep({2: 10.0, 1: 5.0})}]}
    assert [lv.concurrency for lv in read_sweep(report)] == [1, 2]


def test_known_good_with_a_newer_untested_image():
    cell = {c.id: c for c in syn.board().cells}["vllm-0.19.1-cu130-sm_121a"]
    assert cell.state == "known-good" and cell.newer_untested and "newer build untested" in cell.label


def test_a_tested_but_unpromoted_image_is_not_known_good():
    c = CellInput(id="e-1-cpu", engine="e", version="1", arch="cpu", cuda=None)
    ev = {c.id: CellEvidence(latest=BuiltImage(digest=syn.digest("z")),
                             reports={syn.digest("z"): syn.report(c.id, "z", tps=3.0)})}
    cell = build_board(cells=[c], evidence=ev, image_repo=syn.REPO, generated_at="now").cells[0]
    assert cell.state == "untested" and cell.known_good is None and cell.last_smoke and cell.last_smoke.passed


def test_record_patches_win_over_the_plan():
    cell = {c.id: c for c in syn.board().cells}["vllm-0.20.2-cu130-sm_121a"]
    assert [(p.id, p.sha256) for p in cell.patches_applied] == [("ptxas-sm121a", "cd" * 32)]
    never = {c.id: c for c in syn.board().cells}["vllm-0.16.0-cu129-sm_121a"]
    assert never.patches_applied[0].note == "applies" and never.patches_skipped[0].verdict == "already upstream"


def test_grid_order_newest_version_first_and_matrix_arch_order():
    board = syn.board()
    assert [v for _, v in board.rows] == ["0.33.0", "0.32.0", "0.20.2", "0.19.1", "0.16.0", "0.11.0"]
    assert board.columns[0] == ("sm_90", "12.9") and board.columns[-1] == ("cpu", None)
    assert board.at(("vllm", "0.32.0"), ("cpu", None)).id == "vllm-0.32.0-cpu"
    assert board.at(("vllm", "0.32.0"), ("sm_90", "12.9")) is None


def test_duplicate_and_unsafe_ids_are_refused():
    c = CellInput(id="a-1", engine="a", version="1", arch="cpu", cuda=None)
    with pytest.raises(ValueError, match="duplicate"):
        build_board(cells=[c], excluded=[ExcludedInput(id="a-1", engine="a", version="1", arch="cpu", cuda=None,
                                                       reason="r")], evidence={}, image_repo="r", generated_at="t")
    with pytest.raises(ValueError, match="safe file name"):
        CellInput(id="../x", engine="a", version="1", arch="cpu", cuda=None)


def test_collect_evidence_reads_what_the_board_shows():
    from builder.board.collect import collect_evidence

    truth = syn.evidence()

    class Source:
        def __init__(self):
            self.asked = []

        def known_good(self, cell_id):
            return truth[cell_id].record if cell_id in truth else None

        def smoke_report(self, digest):
            self.asked.append(digest)
            return next((ev.reports[digest] for ev in truth.values() if digest in ev.reports), None)

        def newest_image(self, cell_id):
            return truth[cell_id].latest if cell_id in truth else None

    source = Source()
    cells, _ = syn.matrix()
    got = collect_evidence(source, [c.id for c in cells])
    assert got.keys() == {c.id for c in cells}
    for cell_id, ev in truth.items():
        assert got[cell_id] == ev, cell_id
    assert len(source.asked) == len(set(source.asked))  # each digest read once
    assert syn.digest("a1") in source.asked  # history digests too

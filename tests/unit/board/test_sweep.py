"""The one reader of the stored sweep format (issue 15), and the old single number."""

from builder.board.sweep import read_sweep
from tests.unit.board import synthetic as syn


def test_issue_15_sweep_as_the_data_of_a_check_named_sweep():
    report = syn.report("c", "x", rates={8: 800.0, 1: 100.0})
    levels = read_sweep(report)
    assert [(lv.concurrency, lv.decode_tps, lv.measure) for lv in levels] == [(1, 100.0, "sweep"), (8, 800.0, "sweep")]
    assert levels[0].spread == 0.01 and levels[0].ttft_ms == 34.0 and levels[0].errors == 0


def test_a_top_level_sweep_key_wins_and_a_bare_list_is_accepted():
    data = {"sweep": syn.sweep({2: 20.0}), "checks": [{"name": "sweep", "data": syn.sweep({4: 1.0})}],
            "throughput_tps": 9.0}
    assert [lv.concurrency for lv in read_sweep(data)] == [2]
    assert read_sweep({"sweep": syn.sweep({3: 3.0})["levels"]})[0].concurrency == 3
    nested = {"checks": [{"name": "sweep", "status": "pass", "data": {"sweep": syn.sweep({5: 5.0})}}]}
    assert read_sweep(nested)[0].concurrency == 5


def test_the_earlier_proposal_keys_still_read():
    levels = read_sweep({"sweep": {"levels": [{"concurrency": 1, "decode_tps_p50": 198.3,
                                               "decode_tps_spread": 0.012, "ttft_ms_p50": 41.0}]}})
    assert (levels[0].decode_tps, levels[0].spread, levels[0].ttft_ms) == (198.3, 0.012, 41.0)


def test_old_reports_one_throughput_number_is_a_legacy_c1_level():
    levels = read_sweep({"throughput_tps": 41.5, "checks": [{"name": "throughput", "status": "pass", "data": {}}]})
    assert [(lv.concurrency, lv.decode_tps, lv.measure) for lv in levels] == [(1, 41.5, "legacy")]
    assert read_sweep({}) == () and read_sweep({"throughput_tps": None}) == () and read_sweep({"throughput_tps": 0}) == ()


def test_malformed_levels_are_skipped_not_fatal():
    data = {"sweep": {"levels": [{"concurrency": "1", "tps_p50": 1.0}, {"concurrency": 0, "tps_p50": 1.0},
                                 {"concurrency": True, "tps_p50": 1.0}, {"concurrency": 2, "tps_p50": None},
                                 "junk", {"concurrency": 4, "tps_p50": 40, "errors": 2}]}, "throughput_tps": 7.0}
    levels = read_sweep(data)
    assert [(lv.concurrency, lv.decode_tps, lv.errors) for lv in levels] == [(4, 40.0, 2)]
    assert read_sweep({"sweep": {"levels": ["junk"]}, "throughput_tps": 7.0})[0].measure == "legacy"

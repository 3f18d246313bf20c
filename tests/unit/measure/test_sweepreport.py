import json

import pytest

from builder.measure.sse import RequestResult, failed
from builder.measure.sweepreport import (
    SweepResult,
    aggregate_decode_tps,
    cv,
    quantile,
    render_table,
    spread,
    summarize_level,
)


def _req(t0, t_first, t_last, tokens, itl=0.01):
    return RequestResult(status="ok", tokens=tokens, chunks=tokens, ttft_s=t_first - t0, t_first=t_first,
                         t_last=t_last, itls_s=(itl,) * (tokens - 1))


def test_aggregate_of_side_by_side_streams_is_the_sum():
    sample = [_req(0, 0.1, 1.1, 101), _req(0, 0.1, 1.1, 101)]
    assert aggregate_decode_tps(sample) == pytest.approx(200.0)


def test_aggregate_of_serialised_streams_is_not_inflated():
    # one slot: the second request decodes after the first; each stream alone runs at 100 tok/s
    sample = [_req(0, 0.1, 1.1, 101), _req(0, 1.2, 2.2, 101)]
    assert sum(r.decode_tps for r in sample) == pytest.approx(200.0)  # what a sum of rates would claim
    assert aggregate_decode_tps(sample) == pytest.approx(200 / 2.1)


def test_aggregate_none_when_a_request_failed():
    assert aggregate_decode_tps([_req(0, 0.1, 1.1, 11), failed("boom")]) is None
    assert aggregate_decode_tps([]) is None


def test_spread_cv_quantile():
    values = [90.0, 100.0, 110.0]
    assert spread(values) == pytest.approx(0.2)
    assert cv(values) == pytest.approx(10 / 100)
    assert cv([5.0]) is None and spread([]) is None
    assert quantile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.9) == 9
    assert quantile([3.0], 0.9) == 3.0


def test_level_summary_round_trips_through_json():
    samples = [[_req(0, 0.1, 1.1, 101), _req(0, 0.12, 1.12, 101)], [_req(0, 0.1, 1.0, 101), failed("HTTP 500")]]
    level = summarize_level(2, samples)
    assert level.requests == 4 and level.errors == 1 and level.first_error == "HTTP 500"
    assert len(level.sample_tps) == 1 and level.tokens_min == 101
    assert level.ttft_p50_s == pytest.approx(0.1) and level.itl_p50_s == pytest.approx(0.01)
    result = SweepResult(model="tiny", max_tokens=101, levels=(level,))
    again = SweepResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again.to_dict() == result.to_dict() and not again.ok


def test_table_has_the_columns_and_flags_short_streams():
    good = summarize_level(1, [[_req(0, 0.02, 1.02, 101)]] * 3)
    short = summarize_level(4, [[_req(0, 0.02, 0.52, 51)] * 4] * 3)
    table = render_table(SweepResult(model="tiny", max_tokens=101, levels=(good, short)))
    head, row1, row4 = table.splitlines()
    assert head.split()[:6] == ["depth", "c", "tok/s(p50)", "by", "client", "server"] and "TTFT p50" in head \
        and "ITL p50" in head and "prefill t/s" in head and "spread" in head
    assert row1.split()[:5] == ["0", "1", "100.0", "client", "100.0"] and "0.0%" in row1 and "20.0 ms" in row1
    assert row4.split()[1] == "4" and "decoded 51 < 101 tokens" in row4

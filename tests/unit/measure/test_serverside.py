"""Server-side timing beside the client's, and the burst control: a level the client could not measure says so.

The servers are real HTTP servers on 127.0.0.1 (fake_engine_for_unit_tests: no engine runs in a unit test).
`hold=True` is the burst control: the server decodes at the same pace but writes every chunk at the end, which
is what a client starved of CPU on a busy runner sees. Its timings are llama-server's (`timings` on the last
chunk) or vLLM's (/metrics counters), by the fake's own clock, read through the real engine modules.
"""
import pytest

from builder.engines import ENGINES
from builder.engines.timing import ServerCounters
from builder.measure.perf import sweep_verdict
from builder.measure.serverside import NOT_MEASURED, BusyBounds, Sample, server_decode_tps
from builder.measure.sse import RequestResult
from builder.measure.stream import SweepError, SweepSpec
from builder.measure.sweep import measure_sample, run_sweep
from builder.measure.sweepreport import SweepResult, render_table, summarize_level
from tests.unit.smoke.fake_engine_for_unit_tests import fake_engine_for_unit_tests

DELAY = 0.01  # per token; see test_sweep_http.py for why not less on a shared 2-core machine
LLAMA, VLLM = ENGINES["llama.cpp"], ENGINES["vllm"]
# On a loaded machine the fake's own pace varies (its threads share the cores with the client), and the spread
# bound would withhold a level for that; the spread rule has its own test, these test the rest.
LOOSE = BusyBounds(max_spread=10.0)


def _spec(**kw):
    return SweepSpec(**{"model": "tiny", "concurrency": (1, 2), "samples": 3, "warmup": 1, "max_tokens": 30,
                        "read_timeout_s": 5.0, "request_deadline_s": 10.0} | kw)


def _req(t_first, t_last, tokens, server=None):
    return RequestResult(status="ok", tokens=tokens, chunks=tokens, ttft_s=0.01, t_first=t_first, t_last=t_last,
                         itls_s=(0.01,) * (tokens - 1), server=server)


def _timed(decode_s, tokens):
    return ServerCounters(requests=1, decode_tokens=tokens - 1, decode_s=decode_s, steps=tokens - 1, step_s=decode_s)


def test_server_window_tells_side_by_side_from_one_after_another():
    side = Sample(requests=(_req(0.0, 1.0, 101, _timed(1.0, 101)), _req(0.0, 1.0, 101, _timed(1.0, 101))))
    assert server_decode_tps(side) == pytest.approx(200)
    serial = Sample(requests=(_req(0.0, 1.0, 101, _timed(1.0, 101)), _req(1.0, 2.0, 101, _timed(1.0, 101))))
    assert server_decode_tps(serial) == pytest.approx(100)  # not 200: the server ran them in turn
    # the client read both streams at t=2 in one go; the server's own decode time still gives the rate
    burst = Sample(requests=(_req(1.999, 2.0, 101, _timed(1.0, 101)),))
    assert server_decode_tps(burst) == pytest.approx(100)
    # metrics covering other requests than the sample's (someone else's traffic): no server figure
    foreign = Sample(requests=(_req(0.0, 1.0, 101),), server=ServerCounters(requests=2, decode_tokens=200, decode_s=2.0))
    assert server_decode_tps(foreign) is None


@pytest.mark.parametrize("engine, fake", [(LLAMA, {"timings": True}), (VLLM, {"metrics": True})],
                         ids=["llamacpp-timings", "vllm-metrics"])
def test_quiet_server_records_the_servers_numbers_beside_the_clients(engine, fake):
    with fake_engine_for_unit_tests(token_delay_s=DELAY, **fake) as server:
        for _ in range(3):  # a quiet run: one of three, on a machine other work shares
            result = run_sweep(server.url, _spec(engine=engine, bounds=LOOSE))
            if all(level.measured for level in result.levels):
                break
    table = render_table(result)
    for level in result.levels:
        assert level.measured and level.source == "server" and not level.unmeasured, table
        assert level.sample_tps == level.server_tps and len(level.client_tps) == 3
        # both clocks agree on a quiet machine, and neither is faster than the server's pace allows
        assert level.tps_p50 == pytest.approx(sorted(level.client_tps)[1], rel=0.15), table
        assert level.tps_p50 <= 1.05 * level.concurrency / DELAY
        assert level.server_step_s == pytest.approx(DELAY, rel=0.5)
    check = sweep_verdict(result)
    assert check.status == "pass" and "by the server's clock" in check.evidence, check.evidence


def test_burst_control_without_server_timing_is_not_measured():
    with fake_engine_for_unit_tests(token_delay_s=DELAY, hold=True) as server:
        result = run_sweep(server.url, _spec())
        with pytest.raises(SweepError, match=NOT_MEASURED):  # the gate's sample: no figure, not a slow one
            measure_sample(server.url, _spec(), 1, 0)
    table = render_table(result)
    for level in result.levels:
        assert not level.measured and level.sample_tps == () and level.tps_p50 is None, table
        assert level.unmeasured.startswith(NOT_MEASURED) and "median chunk gap" in level.unmeasured
        assert level.client_tps and max(level.client_tps) > 10 / DELAY  # what used to be recorded: garbage
    assert "not measured" in table
    check = sweep_verdict(result)
    assert check.status == "skip" and NOT_MEASURED in check.evidence
    again = SweepResult.from_dict(result.to_dict())  # what a record keeps: no figure, the reason
    assert all(lv.tps_p50 is None and lv.unmeasured for lv in again.levels)


@pytest.mark.parametrize("engine, fake", [(LLAMA, {"timings": True}), (VLLM, {"metrics": True})],
                         ids=["llamacpp-timings", "vllm-metrics"])
def test_burst_control_with_server_timing_keeps_c1_and_withholds_the_rest(engine, fake):
    with fake_engine_for_unit_tests(token_delay_s=DELAY, hold=True, **fake) as server:
        result = run_sweep(server.url, _spec(engine=engine, bounds=LOOSE))
        rate, _ = measure_sample(server.url, _spec(engine=engine), 1, 0)  # the gate gets the server's figure
    table = render_table(result)
    c1, c2 = result.level(1), result.level(2)
    # c=1 is the server's own figure, which owes the client nothing; the client's is shown and set aside
    assert c1.measured and c1.source == "server" and c1.tps_p50 <= 1.05 / DELAY, table
    assert "client-side figures not used" in c1.client_note and "median chunk gap" in c1.client_note \
        and "above the server's own" in c1.client_note
    assert rate <= 1.05 / DELAY
    # at c=2 the window leans on when the last chunks arrived, which a starved client cannot say
    assert not c2.measured and c2.unmeasured.startswith(NOT_MEASURED), table
    assert "above the server's own" in c2.unmeasured or "against the server's own step" in c2.unmeasured


def test_spread_beyond_the_bound_is_not_measured():
    steady = [[_req(0, 1.0, 101)]] * 3
    wild = [[_req(0, 1.0, 101)], [_req(0, 0.3, 101)], [_req(0, 1.0, 101)]]
    assert summarize_level(1, steady).measured
    level = summarize_level(1, wild)
    assert not level.measured and "spread" in level.unmeasured and level.client_tps


def test_depth_axis_sends_prompts_of_exact_token_length_and_reports_prefill():
    with fake_engine_for_unit_tests(token_delay_s=DELAY, timings=True, prompt_delay_per_token_s=0.0005) as server:
        result = run_sweep(server.url, _spec(engine=LLAMA, concurrency=(1, 2), samples=2, depths=(0, 96), bounds=LOOSE))
    table = render_table(result)
    assert [(lv.depth, lv.concurrency) for lv in result.levels] == [(0, 1), (0, 2), (96, 1), (96, 2)], table
    streamed = [b for b in server.bodies if b.get("stream")]
    deep = [b["prompt"] for b in streamed if isinstance(b["prompt"], list)]
    assert len(deep) == (1 + 2) * (1 + 2) and all(len(p) == 96 for p in deep)  # warm-up + samples, c=1 and 2
    assert len({tuple(p[:3]) for p in deep}) == len(deep)  # every prompt starts its own way: no cache hit
    assert sum(isinstance(b["prompt"], str) for b in streamed) == len(streamed) - len(deep)  # depth 0: prose
    shallow, at_depth = result.level(1, depth=0), result.level(1, depth=96)
    assert at_depth.prompt_tokens == 96 and at_depth.measured and at_depth.source == "server", table
    # the fake prefills at 2000 tok/s by its own clock (0.5 ms per token, plus 2 ms)
    assert 1000 < at_depth.prefill_tps < 2100 and at_depth.ttft_p50_s > shallow.ttft_p50_s + 0.03, table
    again = SweepResult.from_dict(result.to_dict())
    assert again.level(1, depth=96).prefill_tps == pytest.approx(at_depth.prefill_tps, rel=1e-3)


def test_depth_beyond_the_served_context_or_without_token_ids_is_not_measured():
    with fake_engine_for_unit_tests(token_delay_s=0.002, metrics=True) as server:  # it serves 512 tokens
        result = run_sweep(server.url, _spec(engine=VLLM, concurrency=(1,), samples=2, depths=(0, 500)))
        plain = run_sweep(server.url, _spec(concurrency=(1,), samples=2, depths=(0, 64)))  # no engine: text only
    assert result.level(1, depth=0).measured
    deep = result.level(1, depth=500)
    assert not deep.measured and "500 + 30 tokens exceed the served context of 512" in deep.unmeasured
    assert "token ids" in plain.level(1, depth=64).unmeasured
    assert sweep_verdict(result).status == "pass"


def test_smoke_url_takes_depths_and_reports_both_clocks():
    """`builder smoke --url` (a user's deployment): the depths option, the server's figures beside the client's."""
    from tests.conftest import run_builder
    with fake_engine_for_unit_tests(token_delay_s=0.004, metrics=True) as server:
        done = run_builder("smoke", "--engine", "vllm", "--url", server.url, "--concurrency", "1", "--samples", "2",
                           "--tokens", "24", "--depths", "0,64")
        bad = run_builder("smoke", "--engine", "vllm", "--url", server.url, "--depths", "64,0")
    assert done.returncode == 0, done.stderr
    assert "depth" in done.stdout and " server " in done.stdout and ("by the server's clock" in done.stdout or "no level measured" in done.stdout)
    rows = [line.split() for line in done.stdout.splitlines() if line.split()[:2] in (["0", "1"], ["64", "1"])]
    assert len(rows) == 2, done.stdout
    for row in rows:  # by the server's clock, or (a loaded machine) withheld with the reason under it
        assert row[3] == "server" or row[2:4] == ["not", "measured"], done.stdout
    assert bad.returncode == 2 and "--depths: '64,0'" in bad.stderr and "Traceback" not in bad.stderr

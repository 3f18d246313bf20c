"""What each engine's server says about its own timing, read into ServerCounters."""
import pytest

from builder.engines import ENGINES
from builder.engines.timing import ServerCounters, prometheus_totals

# Trimmed from a vLLM V1 /metrics page: labels, histogram buckets, comments, two label sets of one counter.
VLLM_METRICS = """# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="tiny"} 200.0
vllm:prompt_tokens_total{engine="0",model_name="tiny"} 30.0
vllm:request_decode_time_seconds_bucket{engine="0",le="0.3",model_name="tiny"} 1.0
vllm:request_decode_time_seconds_sum{engine="0",model_name="tiny"} 0.5
vllm:request_decode_time_seconds_count{engine="0",model_name="tiny"} 2.0
vllm:request_prefill_time_seconds_sum{engine="0",model_name="tiny"} 0.02
vllm:request_prefill_time_seconds_count{engine="0",model_name="tiny"} 2.0
vllm:inter_token_latency_seconds_sum{engine="0",model_name="tiny"} 0.495
vllm:inter_token_latency_seconds_count{engine="0",model_name="tiny"} 198.0
vllm:request_success_total{engine="0",finished_reason="length",model_name="tiny"} 1.0
vllm:request_success_total{engine="0",finished_reason="stop",model_name="tiny"} 1.0
"""


def test_prometheus_totals_sum_label_sets_and_skip_buckets():
    totals = prometheus_totals(VLLM_METRICS + "garbage line\nx{unclosed 3\n")
    assert totals["vllm:request_success_total"] == 2.0
    assert not any(name.endswith("_bucket") for name in totals) and "garbage" not in totals


def test_vllm_metrics_become_counters_and_differences_are_a_samples():
    vllm = ENGINES["vllm"]
    before = vllm.metrics_counters(prometheus_totals(VLLM_METRICS))
    assert before == ServerCounters(requests=2, prompt_tokens=30, prefill_s=0.02, decode_tokens=198, decode_s=0.5,
                                    steps=198, step_s=0.495)
    after = vllm.metrics_counters(prometheus_totals(VLLM_METRICS.replace(" 200.0", " 300.0")
                                                    .replace("count{engine=\"0\",model_name=\"tiny\"} 2.0",
                                                             "count{engine=\"0\",model_name=\"tiny\"} 3.0")))
    assert after is not None and (after - before).requests == 1 and (after - before).decode_tokens == 99
    assert before.step_mean_s == pytest.approx(0.0025) and before.prefill_tps == pytest.approx(1500)
    assert vllm.metrics_counters({"other_total": 1.0}) is None  # a server without them says nothing
    assert vllm.chunk_counters({"timings": {"prompt_n": 1}}) is None  # no timing in vLLM's stream


def test_llamacpp_last_chunk_timings_become_one_requests_counters():
    llama = ENGINES["llama.cpp"]
    chunk = {"choices": [{"text": "", "finish_reason": "length"}],
             "usage": {"completion_tokens": 64, "prompt_tokens": 12},
             "timings": {"cache_n": 0, "prompt_n": 12, "prompt_ms": 4.0, "predicted_n": 64, "predicted_ms": 630.0}}
    counters = llama.chunk_counters(chunk)
    # the first token comes from the prompt's logits: 63 steps in predicted_ms
    assert counters == ServerCounters(requests=1, prompt_tokens=12, prefill_s=0.004, decode_tokens=63,
                                      decode_s=0.63, steps=63, step_s=0.63)
    assert counters.step_mean_s == pytest.approx(0.01)
    for bad in ({}, {"timings": "x"}, {"timings": {"prompt_n": 1}}, {"timings": {**chunk["timings"], "predicted_ms": None}}):
        assert llama.chunk_counters(bad) is None
    assert llama.metrics_path is None and ENGINES["vllm"].metrics_path == "/metrics"

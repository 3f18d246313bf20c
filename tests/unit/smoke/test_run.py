"""The smoke run: which recorded baseline is comparable."""

from __future__ import annotations


def test_a_baseline_measured_another_way_is_not_compared():
    from builder.matrix.smoke_settings import SmokeSettings
    from builder.smoke.run import SmokeInputs, comparable_baseline
    settings = SmokeSettings(throughput_tokens=256)
    same = SmokeInputs(cell_id="c", engine="vllm", arch="cpu", gpu=False, image="img", digest="d", settings=settings, baseline_tps=500.0, baseline_measure=("m@1", 256))
    assert comparable_baseline(same, "m@1") == 500.0
    fewer_tokens = SmokeInputs(cell_id="c", engine="vllm", arch="cpu", gpu=False, image="img", digest="d", settings=settings, baseline_tps=500.0, baseline_measure=("m@1", 64))
    assert comparable_baseline(fewer_tokens, "m@1") is None
    assert comparable_baseline(same, "m@2") is None
    explicit = SmokeInputs(cell_id="c", engine="vllm", arch="cpu", gpu=False, image="img", digest="d", settings=settings, baseline_tps=9e9)
    assert comparable_baseline(explicit, "anything") == 9e9

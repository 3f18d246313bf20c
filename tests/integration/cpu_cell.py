"""The cpu vLLM cell the integration tests build once per session (fixtures in conftest.py)."""

from pathlib import Path

CELL = "vllm-0.32.0-cpu"
BASE = "llm-factory/bookworm-python:3.11"
WHEELS = Path("/opt/wheels")  # torch==2.13.0+cpu lies here on the project's machines
REPOSITORY = "llm-factory/images"


def assert_honest_levels(levels):
    """Every level the real server was swept at (issue 20): recorded by the server's own clock, or withheld as not
    measured with its evidence and no figure; prefill at depth ran (the server counted the 128 prompt tokens)."""
    assert any(lv["tps_p50"] for lv in levels), levels  # at least one level was measurable
    for lv in levels:
        if lv["unmeasured"]:
            assert lv["unmeasured"].startswith("not measured: the runner is too busy (") and lv["tps_p50"] is None
            assert lv["sample_tps"] == [] and lv["client_tps"] == [] and lv["server_tps"] == []
        else:
            assert lv["source"] == "server" and lv["sample_tps"] == lv["server_tps"] and lv["tps_p50"] > 0
            assert lv["client_tps"] and lv["server_step_s"] > 0
        if lv["depth"]:
            assert lv["prompt_tokens"] == 128 and lv["prefill_tps"] > 0 and lv["ttft_p50_s"] > 0

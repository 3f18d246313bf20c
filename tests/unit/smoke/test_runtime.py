"""What the server did: backends named in real start-up log lines, and speculative decoding's counters."""

from __future__ import annotations

from builder.checkresult import FAIL, PASS, SKIP
from builder.engines import llamacpp, vllm
from builder.smoke.runtime import check_backends, check_speculation

# Lines as vLLM 0.20.2 wrote them on the H200 (FLASH_ATTN), and the forms its MoE and quantization oracles use.
VLLM_LOG = """\
INFO 12-02 10:01:02 [__init__.py:216] Automatically detected platform cuda.
(EngineCore_DP0 pid=812) INFO 12-02 10:01:30 [cuda.py:367] Using FLASH_ATTN attention backend out of potential backends: ['FLASH_ATTN', 'FLASHINFER', 'TRITON_ATTN']
(EngineCore_DP0 pid=812) INFO 12-02 10:01:31 [unquantized.py:529] Using TritonExperts MoE backend
(EngineCore_DP0 pid=812) INFO 12-02 10:01:32 [mxfp8.py:139] Using 'FLASHINFER_CUTLASS' MxFp8 MoE backend.
(EngineCore_DP0 pid=812) INFO 12-02 10:01:33 [cuda.py:367] Using FLASH_ATTN attention backend out of potential backends: ['FLASH_ATTN']
"""
LLAMA_LOG = """\
load_backend: loaded CUDA backend from /opt/llama.cpp/lib/libggml-cuda.so
load_backend: loaded CPU backend from /opt/llama.cpp/lib/libggml-cpu-haswell.so
llama_model_load_from_file_impl: using device CUDA0 (NVIDIA H200) (0000:00:05.0) - 140155 MiB free
llama_context: flash_attn    = auto -> enabled
"""


def test_vllm_backends_are_read_from_its_start_up_lines_once_each():
    found = [(b.kind, b.name) for b in vllm.backends(VLLM_LOG)]
    assert found == [("attention", "FLASH_ATTN"), ("moe", "TritonExperts"), ("moe", "FLASHINFER_CUTLASS")]
    result = check_backends(VLLM_LOG, vllm, {"attention": "FLASH_ATTN"})
    assert result.status == PASS
    assert result.evidence == "attention FLASH_ATTN; moe TritonExperts; moe FLASHINFER_CUTLASS"


def test_an_expected_backend_the_server_did_not_choose_fails_with_the_log_line():
    result = check_backends(VLLM_LOG, vllm, {"attention": "FLASHINFER"})
    assert result.status == FAIL
    assert result.evidence.startswith("expected attention backend FLASHINFER, the server chose FLASH_ATTN: ")
    assert "Using FLASH_ATTN attention backend out of potential backends" in result.evidence
    missing = check_backends(VLLM_LOG, vllm, {"quantization": "CutlassNvFp4"})
    assert missing.status == FAIL and missing.evidence == ("expected quantization backend CutlassNvFp4; the server's "
                                                           "log names no quantization backend")


def test_no_log_skips_unless_the_cell_expects_backends():
    assert check_backends(None, vllm, {}).status == SKIP
    assert check_backends("", vllm, {}).status == SKIP
    expected = check_backends(None, vllm, {"attention": "FLASH_ATTN"})
    assert expected.status == FAIL and "--server-log FILE" in expected.evidence


def test_llamacpp_names_its_devices_and_flash_attention():
    found = [(b.kind, b.name) for b in llamacpp.backends(LLAMA_LOG)]
    assert found == [("device", "CUDA"), ("device", "CPU"), ("device", "CUDA0 (NVIDIA H200)"),
                     ("attention", "flash_attn enabled")]


METRICS = """\
# HELP vllm:spec_decode_num_draft_tokens_total Number of draft tokens.
# TYPE vllm:spec_decode_num_draft_tokens_total counter
vllm:spec_decode_num_draft_tokens_total{engine="0",model_name="smoke"} 1856.0
vllm:spec_decode_num_accepted_tokens_total{engine="0",model_name="smoke"} 1598.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="smoke",position="0"} 460.0
"""


def test_speculation_counts_drafts_accepted_while_the_checks_ran():
    assert vllm.speculation(METRICS) == (1856, 1598)
    assert vllm.speculation("vllm:num_requests_running 0\n") is None
    assert llamacpp.speculation(METRICS) is None
    passed = check_speculation((1000, 900), (1856, 1598), vllm, "speculation[speculative]")
    assert passed.status == PASS and passed.evidence == "698 of 856 drafted tokens accepted (82%) while the checks ran"


def test_a_speculative_profile_that_never_accepted_a_draft_fails_as_not_exercised():
    none_accepted = check_speculation((0, 0), (4, 0), vllm, "speculation[ngram]")
    assert none_accepted.status == FAIL
    assert none_accepted.evidence == ("not exercised: 0 of 4 drafted tokens accepted while the checks ran (the profile "
                                      "tested plain decoding)")
    no_counters = check_speculation(None, None, vllm, "speculation[ngram]")
    assert no_counters.status == FAIL and no_counters.evidence.startswith("not exercised: vllm's server reports no")

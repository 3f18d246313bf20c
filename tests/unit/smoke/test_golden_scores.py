"""Goldens by teacher forcing: the candidate scores the known-good's golden continuations; how far each golden
token's logprob moved (pure), records read back defensively, and the check against a scripted vLLM-shaped server
(a fake: tests/integration/test_consistency_cpu.py runs the real one)."""

from __future__ import annotations

import math

import pytest

from builder.checkresult import FAIL, PASS, SKIP
from builder.engines import TokenScore, llamacpp, vllm
from builder.smoke.golden_scores import GoldenScore, check_golden_scores, drift, read_golden_scores
from builder.smoke.openai import SmokeSpec
from tests.unit.smoke.test_checks import serve  # noqa: F401 (the fixture)

GOLDEN = {"alpha": GoldenScore(prompt_ids=(1, 2), output_ids=(3, 4, 5), logprobs=(-0.5, -1.0, -2.0))}


def test_drift_names_the_worst_token_the_mean_and_the_top1_agreement():
    candidate = {"alpha": [TokenScore(token=3, logprob=-0.5, best=-0.5, text="c"),
                           TokenScore(token=4, logprob=-1.3, best=-1.1, text="d"),
                           TokenScore(token=5, logprob=-2.0, best=-2.0, text="e")]}
    result = drift(GOLDEN, candidate)
    assert (result.tokens, result.top1, result.worst_position, result.worst_text) == (3, 2, 1, "d")
    assert result.worst == pytest.approx(0.3) and result.mean == pytest.approx(0.1)
    nan = drift(GOLDEN, {"alpha": [TokenScore(token=3, logprob=math.nan, best=0.0)]})
    assert nan.worst == math.inf


@pytest.mark.parametrize("entry", [
    None, "x", {"prompt_ids": [1], "output_ids": [2], "logprobs": [-1.0, -2.0]},
    {"prompt_ids": [], "output_ids": [2], "logprobs": [-1.0]},
    {"prompt_ids": [1], "output_ids": [-2], "logprobs": [-1.0]},
    {"prompt_ids": [1], "output_ids": [True], "logprobs": [-1.0]},
    {"prompt_ids": [1], "output_ids": [2], "logprobs": ["-1"]},
    {"prompt_ids": [1], "output_ids": [2], "logprobs": [float("inf")]},
    {"prompt_ids": [1] * 5000, "output_ids": [2], "logprobs": [-1.0]},
])
def test_a_record_entry_that_is_not_a_golden_score_is_left_out(entry):
    assert read_golden_scores({"p": entry}) == {}
    assert read_golden_scores([entry]) == {}


def test_golden_scores_round_trip_through_a_record():
    data = {prompt: score.to_dict() for prompt, score in GOLDEN.items()}
    assert read_golden_scores(data) == GOLDEN


def scoring(scale: float):
    """Scores every token as the known-good did, times `scale` (1: the same image; else numeric drift)."""
    def reply(server, path, body):
        ids = body["prompt"]
        entries = [None] + [{str(t): {"logprob": GOLDEN["alpha"].logprobs[i - 2] * scale if i >= 2 else -0.1,
                                      "rank": 1, "decoded_token": chr(96 + t)}} for i, t in enumerate(ids) if i]
        return 200, {"choices": [{"text": "", "prompt_logprobs": entries}]}
    return reply


def spec() -> SmokeSpec:
    return SmokeSpec(served_name="tiny", engine=vllm, timeout=5)


def test_the_same_scores_pass_and_a_drift_that_changes_no_text_fails(serve):
    same = check_golden_scores(serve(scoring(1.0)).url, spec(), GOLDEN, 0.02)
    assert same.status == PASS
    assert same.evidence == ("3 golden tokens: logprobs moved 0 nats on average, at most 0 (prompt 'alpha', token 0 "
                             "'c'); top-1 agreement 3/3 (bound 0.02)")
    drifted = check_golden_scores(serve(scoring(1.05)).url, spec(), GOLDEN, 0.02)
    assert drifted.status == FAIL
    assert drifted.evidence == ("3 golden tokens: logprobs moved 0.058 nats on average, at most 0.1 (prompt 'alpha', "
                                "token 2 'e'); top-1 agreement 3/3: more than 0.02")


def test_nothing_recorded_or_an_engine_that_cannot_score_is_a_skip():
    assert check_golden_scores("http://127.0.0.1:9", spec(), {}, 0.02).status == SKIP
    cannot = check_golden_scores("http://127.0.0.1:9", SmokeSpec(served_name="t", engine=llamacpp), GOLDEN, 0.02)
    assert cannot.status == SKIP and "cannot score" in cannot.evidence

"""Near-tie flips under concurrency: the top-2 logprobs of both servers' response shapes, the flip
judged at the first differing token, and check_determinism tolerating only those flips."""

from __future__ import annotations

from builder.engines import vllm

import pytest

from builder.checkresult import FAIL, PASS
from builder.smoke.checks import check_determinism
from builder.smoke.openai import SmokeSpec
from builder.smoke.ties import Position, find_flip, positions
from tests.unit.smoke.test_checks import healthy, serve  # noqa: F401 (the fixture)

# What llama-server b11312 (the llama.cpp cpu cell's image) answered to /v1/completions with
# "logprobs": 2 for the tiny GGUF, trimmed to two tokens: a byte token is U+FFFD as in the text.
LLAMA = {"choices": [{"text": "b\ufffd", "logprobs": {"content": [
    {"id": 73, "token": "b", "bytes": [98], "logprob": -6.3173,
     "top_logprobs": [{"id": 762, "token": "83", "bytes": [56, 51], "logprob": -6.3291},
                      {"id": 73, "token": "b", "bytes": [98], "logprob": -6.3173}]},
    {"id": 259, "token": "\ufffd", "bytes": [157], "logprob": -6.1550,
     "top_logprobs": [{"id": 259, "token": "\ufffd", "bytes": [157], "logprob": -6.1550},
                      {"id": 338, "token": "umber", "bytes": [117, 109, 98, 101, 114], "logprob": -6.2420}]}]}}]}
VLLM = {"choices": [{"text": " 204 is", "logprobs": {
    "tokens": [" 204", " is"], "token_logprobs": [-0.5, -2.0], "text_offset": [0, 4],
    "top_logprobs": [{" 204": -0.5, " 240": -0.5004}, {" is": -2.0, " was": -3.5}]}}]}


def test_both_response_shapes_give_tokens_with_their_alternatives_best_first():
    llama = positions(LLAMA)
    assert [p.text for p in llama] == ["b", "\ufffd"] and llama[0].top[0] == ("b", -6.3173)
    assert llama[0].top[1] == ("83", -6.3291)  # sorted, whatever order the server sent
    vllm = positions(VLLM)
    assert [p.text for p in vllm] == [" 204", " is"] and vllm[1].top == ((" is", -2.0), (" was", -3.5))
    with pytest.raises(ValueError):
        positions({"choices": [{"text": "x"}]})


def test_a_flip_at_a_near_tie_to_the_runner_up_is_within():
    flip = find_flip(positions(VLLM), " 204 is", " 240 was", 0.005)
    assert flip.token == 0 and flip.gap == pytest.approx(4e-4) and flip.runner_up_taken and flip.within


def test_a_decisive_token_or_a_third_choice_is_not_within():
    tokens = positions(VLLM)
    late = find_flip(tokens, " 204 is", " 204 was", 0.005)  # gap 1.5 nats: a real change
    assert late.token == 1 and late.runner_up_taken and not late.within
    third = find_flip(tokens, " 204 is", " 2x", 0.005)  # neither of the top 2
    assert third.token == 0 and not third.runner_up_taken and not third.within
    assert not find_flip(tokens, " 204 is", " 240 was", 1e-4).within  # tolerance below the gap


def test_logprobs_that_do_not_spell_the_sequential_text_excuse_nothing():
    assert find_flip(positions(VLLM), " 204 was", " 240 was", 0.005) is None


def test_an_end_of_sequence_runner_up_is_taken_when_the_output_ends_there():
    tokens = [Position(text="a", top=(("a", -1.0), ("b", -1.1))), Position(text="b", top=(("b", -0.7), ("", -0.7001)))]
    assert find_flip(tokens, "ab", "a", 0.005).within
    assert not find_flip(tokens, "ab", "ac", 0.005).runner_up_taken


def _legacy_logprobs(tokens: list[str], tops: list[dict[str, float]]) -> dict:
    return {"tokens": tokens, "top_logprobs": tops}


def batched_flip(gap: float, garbled_tail: bool = False):
    """A server whose batched run of prompt 'beta' takes the runner-up at its 3rd token, where the
    sequential top-2 gap is `gap` nats; with logprobs it spells the text it answered (each token its own
    top-1, as a correct server's are). garbled_tail: after the flip, the batched run's last token is not the
    top-1 of its own logprobs (rows of the batch mixed up after the sampler chose)."""
    def reply(server, path, body):
        code, payload = healthy(server, path, body)
        if path != "/v1/completions":
            return code, payload
        text = payload["choices"][0]["text"]  # "out:ateb" for beta
        tokens = ["out:", *text[4:]]
        tops = [{t: -1.0, "#": -3.0} for t in tokens]
        if body["prompt"] == "beta":
            # counted, not timed (a loaded machine may serialise the batch): each check_determinism run asks for
            # 'beta' twice sequentially, then once in the concurrent batch (the 3rd), then maybe once to explain it
            asked = sum(1 for p, b in server.calls if p == "/v1/completions" and b.get("prompt") == "beta")
            if asked % 3 == 0:
                tokens = ["out:", "at", "Z", "b"]
                tops = [{"out:": -1.0, "#": -3.0}, {"at": -1.0, "#": -3.0}, {"Z": -1.0, "e": -1.0 - gap},
                        {"#": -0.5, "b": -4.0} if garbled_tail else {"b": -1.0, "#": -2.0}]
            else:
                tokens = ["out:", "at", "e", "b"]
                tops = [{"out:": -1.0, "#": -3.0}, {"at": -1.0, "#": -3.0}, {"e": -1.0, "Z": -1.0 - gap},
                        {"b": -1.0, "#": -2.0}]
            payload["choices"][0]["text"] = "".join(tokens)
        if body.get("logprobs"):
            payload["choices"][0]["logprobs"] = _legacy_logprobs(tokens, tops)
        return code, payload
    return reply


def test_determinism_tolerates_near_tie_flips_only_when_the_cell_says_so(serve):
    url = serve(batched_flip(2e-4)).url
    spec = SmokeSpec(served_name="tiny", engine=vllm, prompts=("alpha", "beta", "gamma", "delta", "epsilon"), max_tokens=8, rounds=2,
                     concurrency=5)
    exact, _ = check_determinism(url, spec)
    assert exact.status == FAIL and "prompt 'beta' differs at char 6" in exact.evidence
    tolerant, outputs = check_determinism(url, SmokeSpec(**{**spec.__dict__, "tie_nats": 0.005}))
    assert tolerant.status == PASS and "1 flipped at near-ties (top-2 gap up to 0.0002 nats < 0.005" in tolerant.evidence
    assert tolerant.data["near_tie_flips"] == [{"prompt": "beta", "token": 2, "gap": pytest.approx(2e-4)}]
    assert outputs["beta"] == "out:ateb"  # the golden outputs stay the sequential ones


def test_a_flip_where_the_model_was_decisive_still_fails(serve):
    spec = SmokeSpec(served_name="tiny", engine=vllm, prompts=("alpha", "beta", "gamma", "delta", "epsilon"), max_tokens=8, rounds=2,
                     concurrency=5, tie_nats=0.005)
    result, _ = check_determinism(serve(batched_flip(0.9)).url, spec)
    assert result.status == FAIL and "token 2: top-2 gap 0.9 nats, took the runner-up" in result.evidence


def test_a_garbled_tail_after_a_tolerated_flip_fails(serve):
    """The first difference is a near-tie, then a token the batched run did not pick from its own logprobs:
    a flip tolerated at its first token must not wave the rest through."""
    spec = SmokeSpec(served_name="tiny", engine=vllm, prompts=("alpha", "beta", "gamma", "delta", "epsilon"), max_tokens=8,
                     rounds=2, concurrency=5, tie_nats=0.005)
    result, _ = check_determinism(serve(batched_flip(2e-4, garbled_tail=True)).url, spec)
    assert result.status == FAIL
    assert result.evidence == ("5 concurrent: prompt 'beta': token 3 lies 3.5 nats below the top-1 of its own "
                               "logprobs (tolerated: < 0.005)")


def test_tie_mode_fails_when_the_server_gives_no_logprobs(serve):
    spec = SmokeSpec(served_name="tiny", engine=vllm, prompts=("alpha", "beta"), max_tokens=8, rounds=1, concurrency=2,
                     tie_nats=0.005)
    result, _ = check_determinism(serve().url, spec)
    assert result.status == FAIL and "a flip cannot be told from garbage" in result.evidence

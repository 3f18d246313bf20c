"""Goldens by teacher forcing: the known-good image's greedy continuations, with how likely it found each of their
tokens, are scored again by the candidate. A wrong kernel or a broken quantized path moves those logprobs before it
changes any greedy text, so the candidate passes only when no golden token's logprob moved by more than
`golden_nats` (a per-cell bound) from the known-good's own; the evidence names the worst token, the mean
difference and how many golden tokens are still the candidate's argmax (top-1 agreement).

The records are plain data kept in the smoke report and the known-good record; the verdict is pure; `own_scores`
and `check_golden_scores` ask the server once per prompt.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from builder.checkresult import FAIL, PASS, SKIP, CheckResult, one_line
from builder.engines import TokenScore
from builder.smoke.consistency import Generated, can_score
from builder.smoke.openai import ServerError, SmokeSpec, guarded, request_json

MAX_GOLDEN_TOKENS = 4096  # per prompt, when read back from a record


@dataclass(frozen=True, kw_only=True)
class GoldenScore:
    """One golden continuation: its token ids and the logprob the known-good image gave each output token."""

    prompt_ids: tuple[int, ...]
    output_ids: tuple[int, ...]
    logprobs: tuple[float, ...]  # one per output token (the first output token included)

    def to_dict(self) -> dict[str, Any]:
        return {"prompt_ids": list(self.prompt_ids), "output_ids": list(self.output_ids),
                "logprobs": [round(v, 6) for v in self.logprobs]}

    @classmethod
    def from_dict(cls, data: Any) -> GoldenScore | None:
        """A record's entry, or None when it is not one (a record this version cannot read is not a golden)."""
        if not isinstance(data, Mapping):
            return None
        prompt_ids, output_ids = _ids(data.get("prompt_ids")), _ids(data.get("output_ids"))
        logprobs = data.get("logprobs")
        if prompt_ids is None or output_ids is None:
            return None
        if not isinstance(logprobs, list) or len(logprobs) != len(output_ids) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in logprobs):
            return None
        return cls(prompt_ids=prompt_ids, output_ids=output_ids, logprobs=tuple(float(v) for v in logprobs))


def _ids(value: Any) -> tuple[int, ...] | None:
    if isinstance(value, list) and 0 < len(value) <= MAX_GOLDEN_TOKENS and all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in value):
        return tuple(value)
    return None


def read_golden_scores(data: Any) -> dict[str, GoldenScore]:
    """prompt -> GoldenScore from a report or record; entries that are not golden scores are left out."""
    if not isinstance(data, Mapping):
        return {}
    out = {}
    for prompt, entry in data.items():
        score = GoldenScore.from_dict(entry)
        if isinstance(prompt, str) and score is not None:
            out[prompt] = score
    return out


def _scores(base_url: str, spec: SmokeSpec, prompt_ids: tuple[int, ...], output_ids: tuple[int, ...]) -> list[TokenScore]:
    ids = list(prompt_ids) + list(output_ids)
    body = spec.engine.score_body(spec.served_name, ids)
    if body is None:
        raise ValueError(f"{spec.engine.name}'s server cannot score a prompt")
    response = request_json(base_url, "/v1/completions", spec.timeout, body)
    scores = spec.engine.token_scores(response, ids, len(prompt_ids))
    if len(scores) != len(output_ids):
        raise ValueError(f"the server scored {len(scores)} of {len(output_ids)} output tokens")
    return scores


def generated_outputs(determinism: CheckResult) -> dict[str, Generated]:
    """The first round's outputs with their token ids, from a passing determinism check's data."""
    outputs, ids = determinism.data.get("outputs") or {}, determinism.data.get("ids") or {}
    return {prompt: Generated(text=str(outputs.get(prompt, "")), prompt_ids=tuple(pair[0]), output_ids=tuple(pair[1]))
            for prompt, pair in ids.items() if determinism.status == PASS}


def own_scores(base_url: str, spec: SmokeSpec, generated: Mapping[str, Generated]) -> dict[str, GoldenScore]:
    """The server's scores of its own greedy outputs (they become the goldens when the image is promoted); empty
    when the engine cannot score or the outputs carry no ids, or on server trouble (nothing is recorded then)."""
    if not can_score(spec):
        return {}
    out = {}
    try:
        for prompt, got in generated.items():
            if got.scorable:
                scores = _scores(base_url, spec, got.prompt_ids, got.output_ids)
                out[prompt] = GoldenScore(prompt_ids=got.prompt_ids, output_ids=got.output_ids,
                                          logprobs=tuple(s.logprob for s in scores))
    except (ServerError, KeyError, IndexError, TypeError, ValueError, AttributeError):
        return {}
    return out


@dataclass(frozen=True, kw_only=True)
class Drift:
    """The candidate's scores of the goldens against the known-good's own (pure)."""

    tokens: int
    mean: float  # mean |difference| of the golden tokens' logprobs, nats
    worst: float
    worst_prompt: str
    worst_position: int
    worst_token: int
    worst_text: str
    top1: int  # golden tokens that are still the candidate's argmax

    def describe(self) -> str:
        return (f"{self.tokens} golden tokens: logprobs moved {self.mean:.2g} nats on average, at most {self.worst:.2g} "
                f"(prompt {one_line(self.worst_prompt, 40)!r}, token {self.worst_position} {self.worst_text!r}); "
                f"top-1 agreement {self.top1}/{self.tokens}")


def drift(golden: Mapping[str, GoldenScore], candidate: Mapping[str, list[TokenScore]]) -> Drift:
    total, count, top1 = 0.0, 0, 0
    worst = (-1.0, "", 0, -1, "")
    for prompt, record in golden.items():
        for position, (theirs, ours) in enumerate(zip(record.logprobs, candidate[prompt])):
            difference = abs(ours.logprob - theirs)
            if math.isnan(difference):
                difference = math.inf
            total, count = total + difference, count + 1
            top1 += ours.best - ours.logprob <= 0
            if difference > worst[0]:
                worst = (difference, prompt, position, ours.token, ours.text)
    return Drift(tokens=count, mean=total / count if count else 0.0, worst=max(worst[0], 0.0), worst_prompt=worst[1],
                 worst_position=worst[2], worst_token=worst[3], worst_text=worst[4], top1=top1)


@guarded("golden_scores")
def check_golden_scores(base_url: str, spec: SmokeSpec, golden: Mapping[str, GoldenScore], bound: float) -> CheckResult:
    if not golden:
        return CheckResult("golden_scores", SKIP, "no golden scores recorded for this cell yet", {})
    if not can_score(spec):
        return CheckResult("golden_scores", SKIP, f"{spec.engine.name}'s server cannot score a prompt", {})
    candidate = {prompt: _scores(base_url, spec, record.prompt_ids, record.output_ids)
                 for prompt, record in golden.items()}
    result = drift(golden, candidate)
    data = {"tokens": result.tokens, "mean": result.mean, "worst": result.worst if math.isfinite(result.worst) else
            str(result.worst), "prompt": result.worst_prompt, "position": result.worst_position,
            "top1": result.top1, "bound": bound}
    if result.worst > bound:
        return CheckResult("golden_scores", FAIL, f"{result.describe()}: more than {bound:g}", data)
    if spec.consistency == "scored":  # the golden texts were not compared exactly: each token must still be greedy
        off = max(((s.best - s.logprob, prompt, i, s.text) for prompt, scores in candidate.items()
                   for i, s in enumerate(scores)), default=(0.0, "", 0, ""))
        if not off[0] <= spec.consistency_nats:
            return CheckResult("golden_scores", FAIL, f"golden token {off[2]} ({off[3]!r}) of prompt "
                               f"{one_line(off[1], 40)!r} lies {off[0]:.3g} nats below this image's argmax "
                               f"(bound {spec.consistency_nats:g})", data)
    return CheckResult("golden_scores", PASS, f"{result.describe()} (bound {bound:g})", data)

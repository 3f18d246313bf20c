"""Teacher-forced consistency: the server under test re-reads a prompt with an output appended and says how
far below its own argmax each output token lay. A flip between near-equal tokens (a GPU server that is not
batch-invariant: another batch shape, a prefix-cache hit) lies a fraction of a nat below; a garbled token
(rows of a batch mixed up, a broken kernel) lies nats below.

Measured on the H200 (vLLM 0.20.2, 8 B-shaped random model, ../shared/GPU.md): flipped concurrent outputs at
most 0.16 nats (0.22 under speculative decoding), the sequential output scored by itself at most 0.14 (prefill
and decode numerics differ), the same outputs shuffled at least 5.8. The verdict over scores is pure; `score`
asks the server once per output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from builder.checkresult import one_line
from builder.engines import TokenScore
from builder.smoke.openai import ServerError, SmokeSpec, request_json


@dataclass(frozen=True, kw_only=True)
class Generated:
    """One greedy completion: its text, and its token ids when the engine's server returns them."""

    text: str
    prompt_ids: tuple[int, ...] = ()
    output_ids: tuple[int, ...] = ()

    @property
    def scorable(self) -> bool:
        return bool(self.prompt_ids) and bool(self.output_ids)


@dataclass(frozen=True, kw_only=True)
class Scored:
    """An output scored by the server: its worst token (the largest deficit below the argmax there)."""

    prompt: str
    where: str  # "round 2", "6 concurrent", "golden", ...
    tokens: int  # output tokens scored
    flipped: int  # of which the server's argmax was another token
    worst_position: int  # index in the output (0: the first generated token)
    worst_token: int
    worst_text: str
    deficit: float  # nats below the argmax at the worst position (inf/nan: the server said so)

    def describe(self) -> str:
        return (f"{self.where}: prompt {one_line(self.prompt, 40)!r}: output token {self.worst_position} "
                f"({self.worst_text!r}, id {self.worst_token}) lies {self.deficit:.3g} nats below the server's argmax; "
                f"{self.flipped} of {self.tokens} tokens were not the argmax")

    def as_data(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "where": self.where, "tokens": self.tokens, "flipped": self.flipped,
                "position": self.worst_position, "token": self.worst_token, "text": self.worst_text,
                "deficit": self.deficit if math.isfinite(self.deficit) else str(self.deficit)}


def verdict(scores: list[TokenScore], *, prompt: str, where: str) -> Scored:
    """The worst token of one scored output (pure). An empty output scores 0 with no worst token."""
    worst_index, worst = -1, 0.0
    flipped = 0
    for index, score in enumerate(scores):
        deficit = score.best - score.logprob
        if math.isnan(deficit):
            deficit = math.inf  # a server that cannot say how likely its own output was has failed
        if deficit > 0:
            flipped += 1
        if deficit > worst or worst_index < 0:
            worst_index, worst = index, deficit
    token = scores[worst_index] if worst_index >= 0 else None
    return Scored(prompt=prompt, where=where, tokens=len(scores), flipped=flipped, worst_position=max(worst_index, 0),
                  worst_token=token.token if token else -1, worst_text=token.text if token else "", deficit=worst)


def score(base_url: str, spec: SmokeSpec, generated: Generated, *, prompt: str, where: str) -> Scored:
    """Ask the server to score `generated` (its prompt ids + output ids); ServerError/ValueError on trouble."""
    ids = list(generated.prompt_ids) + list(generated.output_ids)
    body = spec.engine.score_body(spec.served_name, ids)
    if body is None:
        raise ValueError(f"{spec.engine.name}'s server cannot score a prompt")
    response = request_json(base_url, "/v1/completions", spec.timeout, body)
    return verdict(spec.engine.token_scores(response, ids, len(generated.prompt_ids)), prompt=prompt, where=where)


def can_score(spec: SmokeSpec) -> bool:
    """Whether the engine's server scores a prompt (its module gives a scoring request)."""
    return spec.engine.score_body(spec.served_name, [0]) is not None


def try_score(base_url: str, spec: SmokeSpec, generated: Generated, *, prompt: str, where: str) -> Scored | None:
    """score(), or None when the engine or this answer cannot be scored (the caller says so)."""
    if not generated.scorable or not can_score(spec):
        return None
    try:
        return score(base_url, spec, generated, prompt=prompt, where=where)
    except (ServerError, KeyError, IndexError, TypeError, ValueError, AttributeError):
        return None

"""Near-tie flips: when a concurrent greedy output differs from the sequential one, was it only a
flip between two almost equally likely tokens? (parsing pure; `explain_flip` asks the server once)

Some engines are not batch-invariant: llama.cpp's CUDA path picks other matmul and attention kernels
when several sequences share a batch, so logits move by ~1e-6 relative. With random weights the
logits are nearly flat, and on the H200 1 to 4 of 24 concurrent requests flipped, each at a token
whose top-2 logprob gap was 6e-6 to 1.6e-3 nats (sequential rounds never differed). A batching bug
diverges where the model was decisive. So a cell may set `determinism_tie_nats`: a differing output
is accepted when, at its first differing token, the sequential run's top-2 gap is under it and the
concurrent run took the runner-up; anything else still fails.

Two response shapes carry the top-2 logprobs of /v1/completions with `logprobs: 2`:
  llama-server   choices[0].logprobs.content = [{token, bytes, logprob, top_logprobs: [{token, bytes, logprob}]}]
  vLLM (OpenAI)  choices[0].logprobs = {tokens: [...], top_logprobs: [{token: logprob}, ...]}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from builder.smoke.openai import ServerError, SmokeSpec, generate


@dataclass(frozen=True, kw_only=True)
class Position:
    """One generated token: its text as the server spells it (a partial UTF-8 byte is U+FFFD, as in
    the completion's text) and the top alternatives, best first."""

    text: str
    top: tuple[tuple[str, float], ...]
    logprob: float | None = None  # the chosen token's own logprob, when the server says

    def deficit(self) -> float:
        """How far the chosen token lies below the top-1 of this position (0: it is the top-1)."""
        if not self.top or self.top[0][0] == self.text:
            return 0.0
        own = self.logprob if self.logprob is not None else dict(self.top).get(self.text)
        if own is None:  # not among the alternatives: at least below the last of them
            return self.top[0][1] - self.top[-1][1] if len(self.top) > 1 else float("inf")
        return max(0.0, self.top[0][1] - own)


@dataclass(frozen=True, kw_only=True)
class Flip:
    token: int  # index of the first differing token
    gap: float  # top-1 minus top-2 logprob there, nats (sequential run)
    runner_up_taken: bool  # the concurrent output continues with the sequential run's second choice
    within: bool  # gap under the cell's tolerance and the runner-up taken

    def describe(self) -> str:
        taken = "took the runner-up" if self.runner_up_taken else "took neither of the top 2"
        return f"token {self.token}: top-2 gap {self.gap:.2g} nats, {taken}"


def positions(response: dict[str, Any]) -> list[Position]:
    """The tokens of a completion with their top alternatives (ValueError for any other shape)."""
    logprobs = response["choices"][0].get("logprobs")
    if isinstance(logprobs, dict) and isinstance(logprobs.get("content"), list):  # llama-server
        out = []
        for entry in logprobs["content"]:
            top = sorted(((str(t["token"]), float(t["logprob"])) for t in entry.get("top_logprobs") or ()),
                         key=lambda item: -item[1])
            own = entry.get("logprob")
            out.append(Position(text=str(entry["token"]), top=tuple(top),
                                logprob=float(own) if isinstance(own, (int, float)) else None))
        return out
    if isinstance(logprobs, dict) and isinstance(logprobs.get("tokens"), list):  # vLLM, OpenAI legacy
        tops = logprobs.get("top_logprobs") or [None] * len(logprobs["tokens"])
        return [Position(text=str(tok),
                         top=tuple(sorted(((str(k), float(v)) for k, v in (alts or {}).items()),
                                          key=lambda item: -item[1])))
                for tok, alts in zip(logprobs["tokens"], tops)]
    raise ValueError("the response carries no logprobs")


def find_flip(tokens: list[Position], expected: str, got: str, tie_nats: float) -> Flip | None:
    """Where `got` leaves the sequential run `tokens` (whose text is `expected`); None when the
    logprobs do not spell `expected` (then nothing can be said, and the difference stands)."""
    want, have = expected, got
    if "".join(p.text for p in tokens) != want:
        return None
    at = next((i for i, (a, b) in enumerate(zip(want, have)) if a != b), min(len(want), len(have)))
    start = 0
    for index, position in enumerate(tokens):
        end = start + len(position.text)
        if at < end or index == len(tokens) - 1:
            if len(position.top) < 2:
                return None
            gap = position.top[0][1] - position.top[1][1]
            runner, rest = position.top[1][0], have[start:]
            # an empty runner-up is the end of the sequence: taken when the concurrent output ends here
            taken = (rest.startswith(runner) or (bool(rest) and runner.startswith(rest))) if runner else not rest
            return Flip(token=index, gap=gap, runner_up_taken=taken, within=taken and gap < tie_nats)
        start = end
    return None


def off_argmax(tokens: list[Position], text: str, tie_nats: float) -> tuple[int, float] | None:
    """A concurrent output's own logprobs: the first token that is not the top-1 of its own distribution by
    tie_nats or more (index, deficit), e.g. rows of a batch mixed up after the sampler chose. Followed past the
    first flip, this is what keeps a garbled tail after a near-tie from passing. ValueError when the logprobs
    do not spell `text` (then nothing can be said about it)."""
    if "".join(p.text for p in tokens) != text:
        raise ValueError("the logprobs do not spell the output")
    for index, position in enumerate(tokens):
        deficit = position.deficit()
        if deficit >= tie_nats:
            return index, deficit
    return None


def explain_flip(base_url: str, spec: SmokeSpec, prompt: str, expected: str, got: str) -> Flip | None:
    """Ask for the sequential run again with its top-2 logprobs, and judge the flip; None when that
    cannot be told (no logprobs, a server error, or a sequential run that itself moved)."""
    try:
        response = generate(base_url, spec, spec.max_tokens, prompt=prompt, logprobs=2)
        if response["choices"][0].get("text") != expected:
            return None
        return find_flip(positions(response), expected, got, spec.tie_nats)
    except (ServerError, KeyError, IndexError, TypeError, ValueError, AttributeError):
        return None

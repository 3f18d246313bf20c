"""The determinism check: greedy outputs repeated, and under concurrency, must be what the engine promises.

- `exact` (cpu cells, batch-invariant servers): every output equals the sequential first round. A difference
  fails; when the engine's server can score, the evidence names the worst token of the differing output.
- `scored` (GPU servers that are not batch-invariant): every output, sequential and concurrent, is re-scored by
  the server (smoke/consistency.py) and passes when no token lies more than `consistency_nats` below the argmax.
- Engines that cannot score and set `determinism_tie_nats` (llama.cpp on GPUs): a concurrent output may differ
  at a near-tie (smoke/ties.py), and every concurrent output must also be the argmax of its own logprobs at each
  token (within the tie), so a garbled tail after a tolerated flip still fails.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from builder.checkresult import FAIL, PASS, CheckResult, one_line
from builder.smoke.consistency import Generated, Scored, can_score, score, try_score
from builder.smoke.openai import SmokeSpec, generate, guarded
from builder.smoke.ties import explain_flip, off_argmax, positions


def _generate(base_url: str, spec: SmokeSpec, prompt: str, **extra: Any) -> tuple[Generated, dict]:
    response = generate(base_url, spec, spec.max_tokens, prompt=prompt, **spec.engine.ids_fields(), **extra)
    text = response["choices"][0]["text"]
    if not isinstance(text, str):
        raise TypeError(f"completion text is {type(text).__name__}, not a string")
    ids = spec.engine.token_ids(response)
    generated = Generated(text=text, prompt_ids=tuple(ids[0]), output_ids=tuple(ids[1])) if ids else Generated(text=text)
    return generated, response


@guarded("determinism", fallback=dict)
def check_determinism(base_url: str, spec: SmokeSpec) -> tuple[CheckResult, dict[str, str]]:
    """Returns the verdict and the prompt -> text map of the first round (the golden outputs when it passes)."""
    scored = spec.consistency == "scored"
    if scored and not can_score(spec):
        return CheckResult("determinism", FAIL, f"consistency 'scored' needs prompt scoring, which {spec.engine.name}'s "
                           "server does not offer; set consistency: exact (with determinism_tie_nats)", {}), {}
    first: dict[str, Generated] = {}
    scores: list[Scored] = []
    outputs: dict[str, str] = {}

    def failed(evidence: str, prompt: str, got: str, worst: Scored | None = None) -> tuple[CheckResult, dict[str, str]]:
        data: dict[str, Any] = {"outputs": outputs, "prompt": prompt, "got": got, "consistency": spec.consistency}
        if worst is not None:
            data["worst"] = worst.as_data()
        return CheckResult("determinism", FAIL, one_line(evidence, 400), data), outputs

    def judge(prompt: str, got: Generated, where: str) -> tuple[CheckResult, dict[str, str]] | None:
        """A failing result for `got`, or None when it is consistent with the sequential first round."""
        if scored:
            result = score(base_url, spec, got, prompt=prompt, where=where)
            scores.append(result)
            if result.deficit > spec.consistency_nats:
                return failed(f"{result.describe()} (bound {spec.consistency_nats:g})", prompt, got.text, result)
            return None
        expected = first[prompt].text
        if got.text == expected:
            return None
        why = divergence(prompt, expected, got.text, where)
        worst = try_score(base_url, spec, got, prompt=prompt, where=where)
        hint = ""
        if worst is not None and worst.deficit <= spec.consistency_nats:  # a near-tie flip, not garbage
            hint = (f"; within the scored bound ({spec.consistency_nats:g}): a server that is not batch-invariant "
                    "is judged with consistency scored (--consistency scored)")
        return failed(why + (f"; {worst.describe()}{hint}" if worst else ""), prompt, got.text, worst)

    for rnd in range(1, spec.rounds + 1):
        for prompt in spec.prompts:
            got, _ = _generate(base_url, spec, prompt)
            if prompt not in first:
                first[prompt], outputs[prompt] = got, got.text
            verdict = judge(prompt, got, f"round {rnd}")
            if verdict:
                return verdict
    # Repeat prompts so at least `concurrency` requests are in flight: batching bugs show up there.
    batch = [spec.prompts[i % len(spec.prompts)] for i in range(max(spec.concurrency, len(spec.prompts)))]
    ties = not scored and spec.tie_nats > 0
    extra = {"logprobs": 2} if ties else {}
    with ThreadPoolExecutor(max_workers=len(batch)) as pool:
        answers = list(pool.map(lambda p: _generate(base_url, spec, p, **extra), batch))
    where = f"{len(batch)} concurrent"
    flips: list[dict[str, Any]] = []
    for prompt, (got, response) in zip(batch, answers):
        if ties:
            garbled = _off_argmax(response, got.text, spec.tie_nats)
            if garbled:
                return failed(f"{where}: prompt {one_line(prompt, 40)!r}: {garbled}", prompt, got.text)
            if got.text != first[prompt].text:
                flip = explain_flip(base_url, spec, prompt, first[prompt].text, got.text)
                if flip is None or not flip.within:
                    note = f" ({flip.describe()}; tolerated: gap < {spec.tie_nats:g} and the runner-up)" if flip else ""
                    return failed(divergence(prompt, first[prompt].text, got.text, where) + note, prompt, got.text)
                flips.append({"prompt": prompt, "token": flip.token, "gap": flip.gap})
            continue
        verdict = judge(prompt, got, where)
        if verdict:
            return verdict
    return _passed(spec, outputs, batch, answers, first, scores, flips), outputs


def _off_argmax(response: dict, text: str, tie_nats: float) -> str | None:
    try:
        found = off_argmax(positions(response), text, tie_nats)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        return f"its own logprobs cannot be read ({one_line(str(exc), 80)}), so a flip cannot be told from garbage"
    if found is None:
        return None
    index, deficit = found
    return f"token {index} lies {deficit:.3g} nats below the top-1 of its own logprobs (tolerated: < {tie_nats:g})"


def _passed(spec: SmokeSpec, outputs: dict[str, str], batch: list[str], answers: list[tuple[Generated, dict]],
            first: dict[str, Generated], scores: list[Scored], flips: list[dict[str, Any]]) -> CheckResult:
    concurrent = len(batch)
    same = f"{len(spec.prompts)} prompts x {spec.rounds} rounds and {concurrent} concurrent requests"
    data: dict[str, Any] = {"outputs": outputs, "consistency": spec.consistency}
    ids = {prompt: [list(got.prompt_ids), list(got.output_ids)] for prompt, got in first.items() if got.scorable}
    if ids:  # the first round's token ids: the golden scores are made from them (smoke/golden_scores.py)
        data["ids"] = ids
    if scores:
        worst = max(scores, key=lambda s: s.deficit)
        differing = sum(1 for (got, _), prompt in zip(answers, batch) if got.text != first[prompt].text)
        data.update(worst=worst.as_data(), scored=len(scores), differing=differing, bound=spec.consistency_nats)
        return CheckResult("determinism", PASS, f"{same} scored by the server: {differing} of {concurrent} concurrent "
                           f"outputs differ from the sequential ones; worst token {worst.deficit:.3g} nats below the "
                           f"argmax (bound {spec.consistency_nats:g})", data)
    if flips:
        widest = max(f["gap"] for f in flips)
        data["near_tie_flips"] = flips
        return CheckResult("determinism", PASS, f"{same}: {concurrent - len(flips)} identical, {len(flips)} flipped "
                           f"at near-ties (top-2 gap up to {widest:.2g} nats < {spec.tie_nats:g}, the runner-up taken)",
                           data)
    return CheckResult("determinism", PASS, f"{same} gave identical greedy outputs", data)


def first_divergence(a: str, b: str) -> int | None:
    """Index of the first differing character (the shorter length if one is a prefix); None if equal."""
    if a == b:
        return None
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def divergence(prompt: str, expected: str, got: str, where: str) -> str:
    """One line naming the prompt, the first differing index, and expected/got snippets around it."""
    i = first_divergence(expected, got) or 0
    lo = max(0, i - 12)
    return (f"{where}: prompt {one_line(prompt, 40)!r} differs at char {i}: expected "
            f"{expected[lo:i + 12]!r}, got {got[lo:i + 12]!r}")

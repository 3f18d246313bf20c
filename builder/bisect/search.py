"""The bisection state machine (pure): given the verdicts so far, which candidate to test next.

Candidates are ordered; index 0 is the good endpoint and n-1 the bad endpoint, both taken as given
(their images are the A/B gate's references). `history` maps an index to the verdicts measured for it,
in order. The answer is a Probe (test this index, this attempt) or Converged.

- good / bad narrow the range: last_good = the highest good index below first_bad = the lowest bad one
  (a good verdict above first_bad contradicts monotonicity and is ignored, as git bisect does).
- skip: the candidate cannot be judged (no image, audit failure, boot failure). While the open range
  holds a skipped index, the next probe is the first untested index of midpoint, midpoint±1, ±2, ±4, ...
  (then the nearest untested one): a run of k skipped commits around the midpoint (a patch that
  conflicts over a range) costs about 2*log2(k) probes instead of k, and the split stays near the middle.
  git bisect gets the same effect with a biased pseudo-random pick; this one is deterministic. When every index between last_good and first_bad is skipped, the
  answer is Converged with those indices as suspects: "the first bad is one of these".
- inconclusive: measured again with the next attempt (the driver raises the sample count per attempt)
  before anything else, up to max_attempts; after that the candidate counts as skip.

Every probe that lands on a fresh index halves the open range, so n candidates take about
ceil(log2(n - 1)) probes without skips or retries.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from .model import Verdict

DEFAULT_MAX_ATTEMPTS = 3


@dataclass(frozen=True, kw_only=True)
class Probe:
    index: int
    attempt: int  # 1 for a first measurement, k for the k-th measurement after inconclusive ones


@dataclass(frozen=True, kw_only=True)
class Converged:
    first_bad: int
    last_good: int
    suspects: tuple[int, ...]  # skipped indices between last_good and first_bad (empty: exact answer)


def final_verdict(verdicts: Sequence[Verdict], max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> Verdict | None:
    """The verdict that counts for one candidate: None when never measured, "inconclusive" while
    another attempt is due, "skip" once max_attempts measurements stayed inconclusive.

    >>> final_verdict(["inconclusive", "bad"])
    'bad'
    >>> final_verdict(["inconclusive", "inconclusive"])
    'inconclusive'
    >>> final_verdict(["inconclusive"] * 3)
    'skip'
    """
    if not verdicts:
        return None
    last = verdicts[-1]
    if last != "inconclusive":
        return last
    return "skip" if sum(1 for v in verdicts if v == "inconclusive") >= max_attempts else "inconclusive"


def finals(history: Mapping[int, Sequence[Verdict]], max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> dict[int, Verdict]:
    out: dict[int, Verdict] = {}
    for index, verdicts in history.items():
        verdict = final_verdict(verdicts, max_attempts)
        if verdict is not None:
            out[index] = verdict
    return out


def bounds(n: int, final: Mapping[int, Verdict]) -> tuple[int, int]:
    """(last_good, first_bad) from the final verdicts; the endpoints count as good and bad."""
    first_bad = min([i for i, v in final.items() if v == "bad" and 0 < i < n] + [n - 1])
    last_good = max([i for i, v in final.items() if v == "good" and 0 <= i < first_bad] + [0])
    return last_good, first_bad


def next_probe(n: int, history: Mapping[int, Sequence[Verdict]], *,
               max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> Probe | Converged:
    if n < 2:
        raise ValueError("a bisect needs at least two candidates (the good and the bad endpoint)")
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    final = finals(history, max_attempts)
    last_good, first_bad = bounds(n, final)
    pending = sorted(i for i, v in final.items() if v == "inconclusive" and last_good < i < first_bad)
    if pending:
        index = pending[0]
        return Probe(index=index, attempt=len(history[index]) + 1)
    untested = [i for i in range(last_good + 1, first_bad) if i not in final]
    if not untested:
        suspects = tuple(i for i in range(last_good + 1, first_bad) if final.get(i) == "skip")
        return Converged(first_bad=first_bad, last_good=last_good, suspects=suspects)
    middle = (last_good + first_bad) / 2
    if any(final.get(i) == "skip" for i in range(last_good + 1, first_bad)):
        open_ = set(untested)
        for index in _away_from(math.floor(middle), last_good, first_bad):
            if index in open_:
                return Probe(index=index, attempt=1)
    index = min(untested, key=lambda i: (abs(i - middle), i))
    return Probe(index=index, attempt=1)


def _away_from(center: int, low: int, high: int) -> Iterator[int]:
    """center, center±1, center±2, center±4, ... inside (low, high): steps out of a run of skipped
    candidates (a patch that conflicts over a range of commits) in about 2*log2(run) probes."""
    yield center
    offset = 1
    while offset < high - low:
        for index in (center + offset, center - offset):
            if low < index < high:
                yield index
        offset *= 2


def expected_steps(n: int) -> int:
    """Probes needed for n candidates without skips or retries (the culprit is one of n - 1)."""
    return math.ceil(math.log2(n - 1)) if n > 2 else 0

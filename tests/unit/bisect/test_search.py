from __future__ import annotations

import math

import pytest

from builder.bisect.search import Converged, Probe, expected_steps, next_probe


def run(n: int, verdict_of, max_attempts: int = 3) -> tuple[Converged, list[Probe]]:
    history: dict[int, list[str]] = {}
    probes: list[Probe] = []
    while True:
        decision = next_probe(n, history, max_attempts=max_attempts)
        if isinstance(decision, Converged):
            return decision, probes
        assert len(probes) < 4 * n, "does not converge"
        probes.append(decision)
        history.setdefault(decision.index, []).append(verdict_of(decision.index, decision.attempt))


@pytest.mark.parametrize("n", [2, 3, 4, 5, 8, 17, 20, 64, 315])
def test_finds_every_first_bad_in_log2_steps(n: int) -> None:
    for k in range(1, n):
        done, probes = run(n, lambda i, a, k=k: "bad" if i >= k else "good")
        assert (done.first_bad, done.last_good, done.suspects) == (k, k - 1, ())
        assert len(probes) <= expected_steps(n) == (math.ceil(math.log2(n - 1)) if n > 2 else 0)


def test_skips_around_the_midpoint_still_converge() -> None:
    broken = {8, 9, 10, 11}
    done, probes = run(20, lambda i, a: "skip" if i in broken else ("bad" if i >= 13 else "good"))
    assert (done.first_bad, done.last_good, done.suspects) == (13, 12, ())
    assert probes[0].index in broken and len(probes) <= expected_steps(20) + len(broken)


def test_all_skipped_between_answers_one_of_these() -> None:
    done, _ = run(20, lambda i, a: "skip" if i in {10, 11, 12} else ("bad" if i >= 12 else "good"))
    assert (done.last_good, done.first_bad, done.suspects) == (9, 13, (10, 11, 12))


def test_inconclusive_is_measured_again_with_the_next_attempt() -> None:
    done, probes = run(20, lambda i, a: "inconclusive" if (i == 9 and a < 3) else ("bad" if i >= 7 else "good"))
    assert [(p.index, p.attempt) for p in probes[:3]] == [(9, 1), (9, 2), (9, 3)]
    assert done.first_bad == 7


def test_inconclusive_up_to_the_cap_counts_as_skip() -> None:
    done, probes = run(20, lambda i, a: "inconclusive" if i == 9 else ("bad" if i >= 9 else "good"), max_attempts=2)
    assert [(p.index, p.attempt) for p in probes[:2]] == [(9, 1), (9, 2)]  # 9: nearest the midpoint 9.5
    assert (done.last_good, done.first_bad, done.suspects) == (8, 10, (9,))


def test_a_good_verdict_above_first_bad_is_ignored() -> None:
    done = next_probe(10, {5: ["bad"], 7: ["good"], 4: ["good"]})
    assert done == Converged(first_bad=5, last_good=4, suspects=())


def test_bad_input() -> None:
    with pytest.raises(ValueError):
        next_probe(1, {})
    with pytest.raises(ValueError):
        next_probe(5, {}, max_attempts=0)


def test_a_long_run_of_skips_is_left_in_log_steps() -> None:
    run_ = range(140, 176)  # a patch conflicts over 36 commits around the midpoint of 315
    done, probes = run(315, lambda i, a: "skip" if i in run_ else ("bad" if i >= 200 else "good"))
    assert (done.first_bad, done.last_good, done.suspects) == (200, 199, ())
    wasted = sum(1 for p in probes if p.index in run_)
    assert wasted <= 2 * math.ceil(math.log2(len(run_))) and len(probes) <= expected_steps(315) + wasted + 1


def test_any_skip_pattern_brackets_the_culprit() -> None:
    import random
    rng = random.Random(1)
    for _ in range(2000):
        n = rng.randint(3, 60)
        k = rng.randint(1, n - 1)
        skipped = set(rng.sample(range(1, n - 1), rng.randint(0, n - 2)))
        done, probes = run(n, lambda i, a, k=k, skipped=skipped: "skip" if i in skipped else ("bad" if i >= k else "good"))
        assert done.last_good < k <= done.first_bad
        assert set(done.suspects) == set(range(done.last_good + 1, done.first_bad)) <= skipped
        assert len(probes) == len({p.index for p in probes})  # nothing tested twice


@pytest.mark.parametrize("max_attempts", [1, 2, 3, 4])
def test_never_an_attempt_past_max_attempts(max_attempts: int) -> None:
    # every candidate stays inconclusive: each is measured exactly max_attempts times, never once more
    done, probes = run(12, lambda i, a: "inconclusive", max_attempts=max_attempts)
    per_index: dict[int, list[int]] = {}
    for p in probes:
        per_index.setdefault(p.index, []).append(p.attempt)
    assert per_index and all(a == list(range(1, max_attempts + 1)) for a in per_index.values()), per_index
    assert done.suspects == tuple(range(1, 11))

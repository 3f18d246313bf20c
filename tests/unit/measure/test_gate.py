import json
import math
import random
from collections import Counter

import pytest

from builder.measure.absession import ABSession
from builder.measure.gate import DEFAULT_GATE, GateResult, GateSettings, compare_level, decide, overall, t_quantile

T_TABLE_95 = {1: 12.706, 2: 4.303, 5: 2.571, 9: 2.262, 17: 2.110, 30: 2.042}


@pytest.mark.parametrize("df, t", T_TABLE_95.items())
def test_t_quantile_matches_tables(df, t):
    assert t_quantile(0.95, df) == pytest.approx(t, abs=5e-4)


def test_t_quantile_other_levels():
    assert t_quantile(0.99, 5) == pytest.approx(4.032, abs=5e-4)
    assert t_quantile(0.90, 10) == pytest.approx(1.812, abs=5e-4)


def test_settings_looks_and_bonferroni():
    s = GateSettings()  # 6 pairs, +3 while inconclusive, up to 18: looks at 6, 9, 12, 15, 18
    assert s.looks == 5 and s.per_look_confidence == pytest.approx(0.99)
    assert GateSettings(initial_pairs=6, step_pairs=4, max_pairs=12).looks == 3  # 6, 10, 12
    with pytest.raises(ValueError):
        GateSettings(initial_pairs=2)


def test_decide_rule():
    assert decide(0.96, 1.02, 0.05, 0.03) == "pass"
    assert decide(0.91, 0.94, 0.05, 0.015) == "regressed"
    assert decide(0.93, 0.97, 0.05, 0.02) == "inconclusive"
    assert decide(0.30, 0.80, 0.05, 0.45) == "inconclusive"  # too wide to resolve the threshold


def test_compare_level_numbers_and_text():
    base = [198.0, 199.0, 197.5, 198.8, 198.1, 198.4]
    cand = [b * r for b, r in zip(base, [0.924, 0.927, 0.922, 0.928, 0.925, 0.924])]
    v = compare_level(base, cand, concurrency=1)
    assert v.verdict == "regressed" and v.ratio == pytest.approx(0.925, abs=1e-3)
    assert v.ci_low < v.ratio < v.ci_high < 0.95 and v.resolution < 0.01
    assert v.render().startswith("c=1: candidate 183.") and "regressed by 7.5%" in v.render()
    assert "95% CI" in v.render() and f"resolves changes >= {100 * v.resolution:.1f}%" in v.render() and "threshold 5%" in v.render()


def test_identical_samples_pass_with_zero_width():
    v = compare_level([100.0] * 4, [100.0] * 4, concurrency=8)
    assert (v.verdict, v.ratio, v.ci_low, v.ci_high, v.resolution) == ("pass", 1.0, 1.0, 1.0, 0.0)


def test_compare_level_rejects_bad_input():
    with pytest.raises(ValueError):
        compare_level([1.0, 2.0], [1.0], concurrency=1)
    with pytest.raises(ValueError):
        compare_level([1.0, 0.0], [1.0, 1.0], concurrency=1)


def test_overall_worst_wins():
    assert overall(["pass", "inconclusive", "pass"]) == "inconclusive"
    assert overall(["pass", "regressed", "inconclusive"]) == "regressed"
    assert overall(["pass"]) == "pass" and overall([]) == "inconclusive"


def _session(seed, slowdown, noise, drift=0.0, settings=DEFAULT_GATE):
    rng, clock = random.Random(seed), [0]

    def sample(factor):
        clock[0] += 1  # drift: the machine slows by `drift` per sample, whatever is measured
        return 100.0 * factor * (1 - drift) ** clock[0] * math.exp(rng.gauss(0.0, noise))
    return ABSession(measure_baseline=lambda c: sample(1.0), measure_candidate=lambda c: sample(1 - slowdown),
                     settings=settings)


def _verdicts(slowdown, noise, trials=200, **kw):
    return Counter(_session(seed, slowdown, noise, **kw).run_level(1).verdict for seed in range(trials))


def test_aa_with_3pct_noise_is_never_regressed():
    counts = _verdicts(0.0, 0.03)
    assert counts["regressed"] == 0 and counts["pass"] >= 190


def test_aa_is_never_regressed_at_any_noise():
    for noise in (0.01, 0.05, 0.1, 0.3):
        assert _verdicts(0.0, noise)["regressed"] == 0, noise


def test_8pct_slowdown_with_1pct_noise_is_regressed():
    assert _verdicts(0.08, 0.01) == Counter({"regressed": 200})


def test_8pct_slowdown_with_30pct_noise_is_inconclusive():
    assert _verdicts(0.08, 0.30) == Counter({"inconclusive": 200})


def test_8pct_slowdown_never_passes_at_any_noise():
    for noise in (0.005, 0.02, 0.03, 0.05, 0.1):
        assert _verdicts(0.08, noise)["pass"] == 0, noise


def test_abba_order_cancels_drift():
    # 1% slowdown of the machine per sample, no real difference, little noise: ABAB would read the
    # candidate (always second) as 1% slower in every pair; ABBA alternates the sign
    counts = _verdicts(0.0, 0.002, drift=0.01, trials=50)
    assert counts["regressed"] == 0
    v = _session(0, 0.0, 0.002, drift=0.01).run_level(1)
    assert v.ratio == pytest.approx(1.0, abs=0.003)


def test_resampling_stops_at_the_cap():
    calls = Counter()

    def noisy(name):
        rng = random.Random(name)

        def measure(c):
            calls[name] += 1
            return 100 * math.exp(rng.gauss(0, 0.5))
        return measure
    settings = GateSettings(initial_pairs=4, step_pairs=5, max_pairs=12)
    v = ABSession(measure_baseline=noisy("a"), measure_candidate=noisy("b"), settings=settings).run_level(2)
    assert v.verdict == "inconclusive" and v.pairs == 12 and calls == Counter(a=12, b=12)


def test_target_resolution_keeps_sampling_a_conclusive_level():
    plain = _session(3, 0.0, 0.01).run_level(1)
    assert plain.verdict == "pass" and plain.pairs == 6 and plain.resolution > 0.015
    tight = _session(3, 0.0, 0.01, settings=GateSettings(target_resolution=0.015)).run_level(1)
    assert tight.verdict == "pass" and tight.pairs > 6 and tight.resolution <= 0.015


def test_gate_result_json_round_trip_and_render():
    levels = [_session(1, 0.0, 0.01).run_level(1), _session(2, 0.08, 0.01).run_level(4)]
    result = GateResult.of(levels, GateSettings())
    assert result.verdict == "regressed"
    again = GateResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again.to_dict() == result.to_dict()
    lines = result.render().splitlines()
    assert lines[0].startswith("A/B gate: regressed") and lines[1].strip().startswith("c=1:")
    assert "c=4:" in lines[2] and "regressed by" in lines[2]
    bad = result.to_dict() | {"verdict": "pass"}
    with pytest.raises(ValueError):
        GateResult.from_dict(bad)

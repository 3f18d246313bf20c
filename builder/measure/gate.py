"""The noise-aware A/B gate (pure): is the candidate's decode rate within `threshold` of the known-good
image's, measured on the same machine in the same session, interleaved?

Method. The inputs are n pairs (baseline_i, candidate_i), the two halves of a pair measured back to back.
Per pair d_i = ln(candidate_i / baseline_i); the estimate is the geometric-mean ratio exp(mean d) and the
interval is Student's t on the d_i: exp(mean d +/- t(conf, n-1) * sd(d) / sqrt(n)).
- Logs, because throughput noise is multiplicative (a busy host slows a run by a fraction) and the
  ratio's interval then is symmetric on the scale the threshold is stated on.
- Pairs, because a pair shares the machine's state of that minute: drift between pairs (thermal, other
  tenants, a page cache warming) cancels in d_i and only the jitter inside a pair remains.
- The t-interval rather than a bootstrap: with n = 5-12 a percentile bootstrap is too narrow (it cannot
  see tails its few points lack, so it undercovers, worst at the smallest n where the gate runs), while
  t is exact for normal d_i, robust to moderate skew, and one outlier widens it (larger sd) rather than
  moving it: the gate then says inconclusive, the safe direction. It is also deterministic, no seed.
The t quantile is computed exactly (integer degrees of freedom have a closed-form CDF), no scipy.

Verdict, with bound = 1 - threshold: "regressed" when the whole interval lies below the bound (slower by
more than the threshold, with confidence), "pass" when the whole interval lies above it (any slowdown is
within the threshold, with confidence), "inconclusive" when the interval contains the bound, and also
when its half-width exceeds the threshold: such an interval cannot tell no change from a threshold-sized
one, and a verdict from it would rest on where the noise put its centre (with resampling, that luck adds
up: without this rule 4% of 8% slowdowns at 30% noise passed in simulation). Every verdict reports the
half-width as "resolves changes >= x%", the smallest observed change the interval tells apart from none.
An A/A (true ratio 1) is called regressed only if the top of a narrow interval falls a full threshold
below the truth; an 8% slowdown (0.92) passes only if the bottom lands above 0.95, 3 points plus a
half-width above the truth. compare_level uses the confidence it is given; ABSession passes
GateSettings.per_look_confidence (Bonferroni over its planned looks, 99% per look for the defaults) so
that the stated confidence holds for the whole resampling session.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

Verdict = Literal["pass", "regressed", "inconclusive"]
VERDICT_RANK: Final[Mapping[Verdict, int]] = {"pass": 0, "inconclusive": 1, "regressed": 2}


def t_two_sided_mass(t: float, df: int) -> float:
    """P(|T| < t) for Student's t with integer df (Abramowitz & Stegun 26.7.3-4, finite series)."""
    if t <= 0:
        return 0.0
    theta = math.atan(t / math.sqrt(df))
    s, c = math.sin(theta), math.cos(theta)
    if df == 1:
        return 2 * theta / math.pi
    term, total = (1.0, 1.0) if df % 2 == 0 else (c, c)  # even: 1 + c^2/2 + ...; odd: c + 2/3 c^3 + ...
    for k in range(2 if df % 2 == 0 else 3, df - 1, 2):
        term *= c * c * (k - 1) / k
        total += term
    return s * total if df % 2 == 0 else 2 / math.pi * (theta + s * total)


def t_quantile(confidence: float, df: int) -> float:
    """The t with P(|T| < t) = confidence (e.g. 2.571 for 0.95 and df 5), by bisection."""
    if not 0 < confidence < 1 or df < 1:
        raise ValueError(f"t_quantile needs 0 < confidence < 1 and df >= 1, got {confidence}, {df}")
    low, high = 0.0, 1.0
    while t_two_sided_mass(high, df) < confidence:
        high *= 2
    for _ in range(100):
        mid = (low + high) / 2
        low, high = (mid, high) if t_two_sided_mass(mid, df) < confidence else (low, mid)
    return (low + high) / 2


@dataclass(frozen=True, kw_only=True)
class GateSettings:
    threshold: float = 0.05  # allowed slowdown, as a fraction
    confidence: float = 0.95
    initial_pairs: int = 6
    step_pairs: int = 3  # pairs added per resampling round while inconclusive
    max_pairs: int = 18
    target_resolution: float | None = None  # keep sampling (to the cap) until the interval resolves this

    def __post_init__(self) -> None:
        if not 0 <= self.threshold < 1 or not 0.5 <= self.confidence < 1 or not 3 <= self.initial_pairs \
                <= self.max_pairs <= 200 or self.step_pairs < 1 or \
                (self.target_resolution is not None and not 0 < self.target_resolution < 1):
            raise ValueError(f"bad GateSettings: {self!r}")

    @property
    def looks(self) -> int:
        """How often a level's interval may be computed: after the initial pairs and after each step."""
        return 1 + -(-(self.max_pairs - self.initial_pairs) // self.step_pairs)

    @property
    def per_look_confidence(self) -> float:
        """Bonferroni over the looks, so that `confidence` holds for the whole sequential session."""
        return 1 - (1 - self.confidence) / self.looks


DEFAULT_GATE: Final = GateSettings()


@dataclass(frozen=True, kw_only=True)
class LevelVerdict:
    concurrency: int
    verdict: Verdict
    ratio: float  # geometric mean of candidate / baseline over the pairs
    ci_low: float
    ci_high: float
    resolution: float  # exp(half-width of the log interval) - 1
    threshold: float
    confidence: float
    baseline_tps: tuple[float, ...]  # in measurement order, pair by pair
    candidate_tps: tuple[float, ...]

    @property
    def pairs(self) -> int:
        return len(self.baseline_tps)

    @property
    def baseline_mean(self) -> float:
        return statistics.geometric_mean(self.baseline_tps)

    @property
    def candidate_mean(self) -> float:
        return statistics.geometric_mean(self.candidate_tps)

    def render(self) -> str:
        change = self.ratio - 1
        if self.verdict == "regressed":
            what = f"regressed by {-100 * change:.1f}%"
        elif self.verdict == "pass":
            what = f"pass ({100 * change:+.1f}%, within {100 * self.threshold:g}%)"
        elif self.resolution > self.threshold:
            what = f"inconclusive ({100 * change:+.1f}%, but too noisy to resolve the threshold)"
        else:
            what = f"inconclusive ({100 * change:+.1f}%; the interval contains -{100 * self.threshold:g}%)"
        return (f"c={self.concurrency}: candidate {self.candidate_mean:.1f} vs known-good "
                f"{self.baseline_mean:.1f} tok/s, ratio {self.ratio:.3f} [{self.ci_low:.3f}, {self.ci_high:.3f}] "
                f"{100 * self.confidence:.4g}% CI, {what} (threshold {100 * self.threshold:g}%, resolves changes "
                f">= {100 * self.resolution:.1f}%, {self.pairs} pairs)")

    def to_dict(self) -> dict[str, Any]:
        return {"concurrency": self.concurrency, "verdict": self.verdict, "ratio": round(self.ratio, 5),
                "ci_low": round(self.ci_low, 5), "ci_high": round(self.ci_high, 5),
                "resolution": round(self.resolution, 5), "threshold": self.threshold,
                "confidence": self.confidence, "pairs": self.pairs,
                "baseline_tps": [round(v, 3) for v in self.baseline_tps],
                "candidate_tps": [round(v, 3) for v in self.candidate_tps]}

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> LevelVerdict:
        verdict = data["verdict"]
        if verdict not in VERDICT_RANK:
            raise ValueError(f"unknown verdict {verdict!r}")
        return LevelVerdict(concurrency=int(data["concurrency"]), verdict=verdict, ratio=float(data["ratio"]),
                            ci_low=float(data["ci_low"]), ci_high=float(data["ci_high"]),
                            resolution=float(data["resolution"]), threshold=float(data["threshold"]),
                            confidence=float(data["confidence"]),
                            baseline_tps=tuple(float(v) for v in data["baseline_tps"]),
                            candidate_tps=tuple(float(v) for v in data["candidate_tps"]))


def decide(ci_low: float, ci_high: float, threshold: float, resolution: float) -> Verdict:
    bound = 1 - threshold
    if resolution > threshold:
        return "inconclusive"  # too wide to tell no change from a threshold-sized one
    if ci_high < bound:
        return "regressed"
    if ci_low > bound:
        return "pass"
    return "inconclusive"


def compare_level(baseline: Sequence[float], candidate: Sequence[float], *, concurrency: int,
                  threshold: float = 0.05, confidence: float = 0.95) -> LevelVerdict:
    """The verdict on n >= 2 pairs; baseline[i] and candidate[i] were measured back to back."""
    if len(baseline) != len(candidate) or len(baseline) < 2:
        raise ValueError(f"need equal numbers (>= 2) of paired samples, got {len(baseline)} and {len(candidate)}")
    if min(*baseline, *candidate) <= 0 or not all(map(math.isfinite, (*baseline, *candidate))):
        raise ValueError("samples must be positive and finite")
    logs = [math.log(b / a) for a, b in zip(baseline, candidate)]
    n, mean = len(logs), statistics.fmean(logs)
    half = t_quantile(confidence, n - 1) * statistics.stdev(logs) / math.sqrt(n)
    low, high = math.exp(mean - half), math.exp(mean + half)
    return LevelVerdict(concurrency=concurrency, verdict=decide(low, high, threshold, math.expm1(half)), ratio=math.exp(mean),
                        ci_low=low, ci_high=high, resolution=math.expm1(half), threshold=threshold,
                        confidence=confidence, baseline_tps=tuple(baseline), candidate_tps=tuple(candidate))


def overall(verdicts: Sequence[Verdict]) -> Verdict:
    """The worst level wins: regressed > inconclusive > pass; nothing measured is inconclusive."""
    return max(verdicts, key=VERDICT_RANK.__getitem__, default="inconclusive")


@dataclass(frozen=True, kw_only=True)
class GateResult:
    verdict: Verdict
    levels: tuple[LevelVerdict, ...]
    settings: GateSettings

    @staticmethod
    def of(levels: Sequence[LevelVerdict], settings: GateSettings) -> GateResult:
        return GateResult(verdict=overall([lv.verdict for lv in levels]), levels=tuple(levels), settings=settings)

    def render(self) -> str:
        head = f"A/B gate: {self.verdict} (worst of {len(self.levels)} levels; candidate vs known-good, " \
               f"interleaved pairs, t-interval on log ratios)"
        return "\n".join([head, *("  " + lv.render() for lv in self.levels)])

    def to_dict(self) -> dict[str, Any]:
        s = self.settings
        return {"verdict": self.verdict, "levels": [lv.to_dict() for lv in self.levels],
                "settings": {"threshold": s.threshold, "confidence": s.confidence, "initial_pairs": s.initial_pairs,
                             "step_pairs": s.step_pairs, "max_pairs": s.max_pairs,
                             "target_resolution": s.target_resolution}}

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> GateResult:
        levels = tuple(LevelVerdict.from_dict(lv) for lv in data["levels"])
        result = GateResult.of(levels, GateSettings(**data["settings"]))
        if result.verdict != data["verdict"]:
            raise ValueError(f"verdict {data['verdict']!r} disagrees with its levels ({result.verdict!r})")
        return result

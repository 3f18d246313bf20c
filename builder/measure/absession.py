"""Driving the A/B gate: interleaved measurement of a known-good (baseline) and a candidate, resampling
while inconclusive, and the two-server form that runs the sweep's samples against both.

Pair order is counterbalanced, ABBA: pair 0 measures baseline then candidate, pair 1 candidate then
baseline, and so on. With plain A B A B the candidate is always the later half of its pair, so a steady
drift (a warming cache, a GPU clocking down, a neighbour's job ramping up) biases every log ratio the
same way; ABBA flips the sign of that bias from pair to pair, so it cancels in the mean and shows up
only as extra spread, which widens the interval (towards "inconclusive"), never moves it.

Resampling: `initial_pairs` pairs, then `step_pairs` more while the level is inconclusive (or, with
`target_resolution`, resolves less than that), up to `max_pairs`; the cap bounds the session. Looking again after each step is a sequential test and the
nominal confidence is then a little optimistic; the gate's margin (an A/A must miss by a whole threshold
to be called regressed) is what keeps the false-alarm rate near zero, and the unit tests measure it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .gate import DEFAULT_GATE, GateResult, GateSettings, LevelVerdict, compare_level
from .serverside import Sample
from .stream import SweepSpec
from .sweep import measure_sample, warm_up
from .sweepreport import SweepResult, summarize_level

Measure = Callable[[int], float]  # concurrency -> one sample's aggregate decode tok/s (raises if unmeasurable)


class ABSession:
    """Interleaves two measure callables per concurrency level until the gate is conclusive or the cap."""

    def __init__(self, *, measure_baseline: Measure, measure_candidate: Measure,
                 settings: GateSettings = DEFAULT_GATE,
                 on_pair: Callable[[int, int, float, float], None] | None = None) -> None:
        self.measure_baseline = measure_baseline
        self.measure_candidate = measure_candidate
        self.settings = settings
        self.on_pair = on_pair  # (concurrency, pair index, baseline, candidate): progress lines

    def _pair(self, concurrency: int, index: int) -> tuple[float, float]:
        if index % 2 == 0:
            baseline = self.measure_baseline(concurrency)
            candidate = self.measure_candidate(concurrency)
        else:
            candidate = self.measure_candidate(concurrency)
            baseline = self.measure_baseline(concurrency)
        if self.on_pair is not None:
            self.on_pair(concurrency, index, baseline, candidate)
        return baseline, candidate

    def run_level(self, concurrency: int) -> LevelVerdict:
        s = self.settings
        pairs = [self._pair(concurrency, i) for i in range(s.initial_pairs)]
        verdict = self._verdict(concurrency, pairs)
        while len(pairs) < s.max_pairs and (verdict.verdict == "inconclusive" or (
                s.target_resolution is not None and verdict.resolution > s.target_resolution)):
            for _ in range(min(s.step_pairs, s.max_pairs - len(pairs))):
                pairs.append(self._pair(concurrency, len(pairs)))
            verdict = self._verdict(concurrency, pairs)
        return verdict

    def _verdict(self, concurrency: int, pairs: Sequence[tuple[float, float]]) -> LevelVerdict:
        return compare_level([a for a, _ in pairs], [b for _, b in pairs], concurrency=concurrency,
                             threshold=self.settings.threshold,
                             confidence=self.settings.per_look_confidence)

    def run(self, levels: Sequence[int]) -> GateResult:
        return GateResult.of([self.run_level(c) for c in levels], self.settings)


@dataclass(frozen=True, kw_only=True)
class InterleavedRun:
    gate: GateResult
    baseline: SweepResult  # the sweep table of each server, from the same samples the gate used
    candidate: SweepResult


def interleave_servers(baseline_url: str, candidate_url: str, spec: SweepSpec,
                       settings: GateSettings = DEFAULT_GATE,
                       on_pair: Callable[[int, int, float, float], None] | None = None) -> InterleavedRun:
    """Gate a candidate server against a known-good server, both already running, alternating sweep
    samples between them at each concurrency level (ABBA, see the module docstring).

    Why both resident with requests alternated in time, rather than A B A B reboots: the noise the gate
    must see through is mostly drift of the machine over minutes (other tenants on a shared runner,
    thermals and clocks, page cache and allocator state), and alternating samples a few seconds apart
    puts both images under the same drift, which the pairing then cancels. Rebooting between samples
    spaces the halves of a pair by a boot (60-100 s for vLLM on the H200, where torch.compile and CUDA
    graph capture also differ per boot: the 7% between-boot spread measured there at c=1), makes each
    pair cost minutes so that few pairs fit a session, and leaves the interval to boot-to-boot variance.
    With both servers resident, boot variance enters once per server, as part of the comparison; each
    sample runs while the other server is idle, so they do not compete for the accelerator. The price is
    memory: both must fit at once (e.g. `--gpu-memory-utilization 0.45` each); where they do not,
    vLLM's sleep mode (offload one while the other runs) keeps the same alternation at the cost of a
    wake-up per switch. A failed sample raises SweepError: a server that errors is not a slow server.
    """
    samples: dict[tuple[str, int], list[Sample]] = {}

    def measurer(role: str, url: str) -> Measure:  # keyed by role: an A/A may name one server twice
        def measure(concurrency: int) -> float:
            bucket = samples.setdefault((role, concurrency), [])
            rate, sample = measure_sample(url, spec, concurrency, len(bucket))
            bucket.append(sample)
            return rate
        return measure

    levels = []
    for concurrency in spec.concurrency:
        warm_up(baseline_url, spec, concurrency)
        warm_up(candidate_url, spec, concurrency)
        session = ABSession(measure_baseline=measurer("baseline", baseline_url),
                            measure_candidate=measurer("candidate", candidate_url),
                            settings=settings, on_pair=on_pair)
        levels.append(session.run_level(concurrency))

    def sweep_of(role: str) -> SweepResult:
        return SweepResult(model=spec.model, max_tokens=spec.max_tokens, levels=tuple(
            summarize_level(c, samples.get((role, c), []), bounds=spec.bounds) for c in spec.concurrency))

    return InterleavedRun(gate=GateResult.of(levels, settings), baseline=sweep_of("baseline"),
                          candidate=sweep_of("candidate"))

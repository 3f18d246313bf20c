"""The decode-performance checks of a smoke run: `sweep` (the concurrency sweep of one server) and
`gate` (the candidate against the cell's known-good image, both resident, samples interleaved ABBA).

The verdict never comes from a recorded number: a known-good record's sweep, measured on another day,
machine or load, is shown beside the verdict as context only. Each check returns a CheckResult and
never raises for server trouble.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from builder.checkresult import FAIL, PASS, SKIP, CheckResult, one_line
from builder.engines import EngineModule
from builder.matrix.smoke_settings import SmokeSettings
from builder.measure.absession import InterleavedRun, interleave_servers
from builder.measure.floor import Floor, floor_words
from builder.measure.gate import GateResult, GateSettings
from builder.measure.stream import SweepError, SweepSpec
from builder.measure.sweep import run_sweep
from builder.measure.sweepreport import LevelResult, SweepResult

NO_INTERVAL = "no interval: no known-good image was measured beside it, so no regression can be resolved"


def sweep_spec(settings: SmokeSettings, served_name: str, engine: EngineModule,
               concurrency: tuple[int, ...] | None = None) -> SweepSpec:
    """The sweep as the cell's settings and its engine's streaming fields say."""
    sweep = settings.sweep
    return SweepSpec(model=served_name, concurrency=concurrency or sweep.concurrency, samples=sweep.samples,
                     warmup=sweep.warmup, max_tokens=sweep.tokens, depths=(0,) if concurrency else sweep.depths,
                     include_usage=engine.stream_usage, ignore_eos=engine.stream_ignore_eos, engine=engine)


def gate_settings(settings: SmokeSettings) -> GateSettings:
    g = settings.gate
    return GateSettings(threshold=g.threshold, confidence=g.confidence, initial_pairs=g.initial_pairs,
                        step_pairs=g.step_pairs, max_pairs=g.max_pairs)


def gate_levels(settings: SmokeSettings) -> tuple[int, ...]:
    return settings.gate.concurrency or settings.sweep.concurrency


def check_sweep(base_url: str, spec: SweepSpec) -> tuple[CheckResult, SweepResult | None]:
    """The sweep of one server. Fails when a request failed or decoded fewer tokens than asked (then
    the rates would compare unequal work)."""
    try:
        result = run_sweep(base_url, spec)
    except (OSError, ValueError) as exc:  # run_sweep turns server trouble into failed requests; this is a bug guard
        return CheckResult("sweep", FAIL, one_line(f"{type(exc).__name__}: {exc}"), {}), None
    return sweep_verdict(result), result


def sweep_verdict(result: SweepResult) -> CheckResult:
    data = result.to_dict()
    bad = [lv for lv in result.levels if lv.errors or (not lv.sample_tps and not lv.unmeasured)]
    if bad:
        lv = bad[0]
        return CheckResult("sweep", FAIL, f"c={lv.concurrency}: {lv.errors}/{lv.requests} requests failed: "
                           f"{one_line(lv.first_error, 120)}", data)
    short = [lv for lv in result.levels if lv.requests and lv.tokens_min < result.max_tokens]
    if short:
        return CheckResult("sweep", FAIL, f"c={short[0].concurrency}: a request decoded {short[0].tokens_min} < "
                           f"{result.max_tokens} tokens (ignore_eos not honoured?)", data)
    measured = [lv for lv in result.levels if lv.measured]
    parts = [f"{_at(lv)}c={lv.concurrency} {lv.tps_p50:.1f}" for lv in measured if lv.tps_p50 is not None]
    unmeasured = [lv for lv in result.levels if lv.unmeasured]
    if unmeasured:  # the plumbing worked; the figure is withheld, never recorded (serverside.py)
        parts.append(f"{_at(unmeasured[0])}c={unmeasured[0].concurrency} {unmeasured[0].unmeasured}"
                     + (f" (and {len(unmeasured) - 1} more levels)" if len(unmeasured) > 1 else ""))
    if not measured:
        return CheckResult("sweep", SKIP, "no level measured: " + "; ".join(parts), data)
    sources = sorted({lv.source for lv in measured})
    return CheckResult("sweep", PASS, f"decode tok/s by the {'/'.join(sources)}'s clock (p50 of "
                       f"{len(measured[0].sample_tps)}, {result.max_tokens} tokens): " + ", ".join(parts), data)


def _at(level: LevelResult) -> str:
    return f"depth {level.depth} " if level.depth else ""


def context_line(recorded: SweepResult | None) -> str:
    """The known-good record's sweep, as context (never the verdict)."""
    if recorded is None:
        return ""
    parts = [f"c={lv.concurrency} {lv.tps_p50:.1f}" for lv in recorded.levels if lv.tps_p50 is not None]
    return "recorded for the known-good (context only, another session): " + ", ".join(parts) if parts else ""


def check_gate(baseline_url: str | None, candidate_url: str, spec: SweepSpec, settings: GateSettings, *,
               accept_inconclusive: bool = False, known_good: str = "", recorded: SweepResult | None = None,
               on_pair: Callable[[int, int, float, float], None] | None = None, floor: Floor | None = None,
               ) -> tuple[CheckResult, InterleavedRun | None]:
    """The A/B gate against a known-good server already running (None: there is none: skip)."""
    context = context_line(recorded)
    if baseline_url is None:
        why = f"no known-good image for this cell yet ({NO_INTERVAL})"
        return CheckResult("gate", SKIP, why, {"context": context, "resolution": None}), None
    try:
        run = interleave_servers(baseline_url, candidate_url, spec, settings, on_pair=on_pair)
    except SweepError as exc:
        return CheckResult("gate", FAIL, one_line(f"a sample could not be measured: {exc}"),
                           {"error": str(exc), "known_good": known_good, "context": context}), None
    return gate_verdict(run.gate, accept_inconclusive=accept_inconclusive, known_good=known_good,
                        context=context, floor=floor), run


def gate_verdict(gate: GateResult, *, accept_inconclusive: bool = False, known_good: str = "",
                 context: str = "", floor: Floor | None = None) -> CheckResult:
    """pass -> pass; regressed -> fail; inconclusive (after resampling to the cap) -> fail, not promoted,
    unless the user accepted inconclusive verdicts (then pass, and the evidence says so). An inconclusive
    level whose whole interval lies below the bound (a large slowdown measured too noisily for the gate's
    verdict rule, which calls nothing from an interval wider than the threshold) is never accepted."""
    worst = max(gate.levels, key=lambda lv: (lv.verdict == "regressed", lv.verdict == "inconclusive",
                                             -lv.ratio)) if gate.levels else None
    resolution = max((lv.resolution for lv in gate.levels), default=None)
    data: dict[str, Any] = {**gate.to_dict(), "known_good": known_good, "accepted_inconclusive": False,
                            "resolution": resolution, "context": context,
                            "floor": floor.to_dict() if floor is not None else None}
    if worst is None:
        return CheckResult("gate", FAIL, "no level was compared", data)
    head = (f"{gate.verdict}: c={worst.concurrency} ratio {worst.ratio:.3f} [{worst.ci_low:.3f}, {worst.ci_high:.3f}]"
            f" vs the known-good beside it, threshold {100 * worst.threshold:g}%; smallest resolvable change "
            f"{100 * (resolution or 0.0):.1f}% ({len(gate.levels)} levels, {sum(lv.pairs for lv in gate.levels)} pairs)"
            + floor_words(floor, worst.concurrency))
    if gate.verdict == "pass":
        return CheckResult("gate", PASS, head, data)
    if gate.verdict == "regressed":
        return CheckResult("gate", FAIL, head, data)
    below = [lv for lv in gate.levels if lv.ci_high < 1 - lv.threshold]
    if below:  # too noisy for a verdict, yet the whole interval says slower than allowed: never accepted
        return CheckResult("gate", FAIL, head + f"; the c={below[0].concurrency} interval lies wholly below "
                           f"{1 - below[0].threshold:.2f}: not promoted, even with --accept-inconclusive", data)
    if accept_inconclusive:
        data["accepted_inconclusive"] = True
        return CheckResult("gate", PASS, head + "; accepted (--accept-inconclusive)", data)
    return CheckResult("gate", FAIL, head + "; not promoted (--accept-inconclusive accepts it)", data)

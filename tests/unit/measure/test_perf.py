"""The sweep and gate checks of a smoke run (verdict mapping, evidence, report round trip) and
`builder smoke --url` against fake engines on loopback (no Docker, no registry)."""

from __future__ import annotations

from builder.engines import vllm

import json

from builder.matrix.smoke_settings import ServeProfile, SmokeSettings, SweepSettings
from builder.measure.gate import GateResult, GateSettings, compare_level
from builder.measure.perf import NO_INTERVAL, check_gate, gate_verdict, sweep_spec, sweep_verdict
from builder.measure.sweepreport import LevelResult, SweepResult
from builder.proof.report import SmokeReport
from tests.conftest import run_builder
from tests.unit.smoke.fake_engine_for_unit_tests import fake_engine_for_unit_tests

SETTINGS = GateSettings(threshold=0.05, initial_pairs=6, max_pairs=12)


def level(c: int, tps: tuple[float, ...], tokens_min: int = 64, errors: int = 0) -> LevelResult:
    return LevelResult(concurrency=c, sample_tps=tps, stream_tps_p50=tps[0] / c if tps else None,
                       ttft_p50_s=0.01, itl_p50_s=0.005, itl_p90_s=0.006, requests=c * len(tps) + errors,
                       errors=errors, first_error="boom" if errors else "", tokens_min=tokens_min)


def gate_of(baseline, candidate, c=1) -> GateResult:
    return GateResult.of([compare_level(baseline, candidate, concurrency=c, threshold=0.05,
                                        confidence=SETTINGS.per_look_confidence)], SETTINGS)


def test_sweep_spec_takes_the_cell_settings_and_the_engines_streaming_fields():
    settings = SmokeSettings(sweep=SweepSettings(concurrency=(1, 4), samples=3, warmup=0, tokens=32))
    spec = sweep_spec(settings, "smoke", vllm)
    assert (spec.concurrency, spec.samples, spec.warmup, spec.max_tokens) == ((1, 4), 3, 0, 32)
    assert spec.ignore_eos and spec.include_usage  # vLLM takes both
    assert sweep_spec(settings, "smoke", vllm, concurrency=(2,)).concurrency == (2,)


def test_sweep_verdict_fails_on_errors_and_short_decodes():
    ok = SweepResult(model="m", max_tokens=64, levels=(level(1, (100.0, 102.0)), level(2, (190.0, 195.0))))
    result = sweep_verdict(ok)
    assert result.status == "pass" and result.evidence.startswith(
        "decode tok/s by the client's clock (p50 of 2, 64 tokens): c=1 101.0")
    assert result.data == ok.to_dict()
    short = SweepResult(model="m", max_tokens=64, levels=(level(1, (100.0,), tokens_min=12),))
    assert sweep_verdict(short).status == "fail" and "12 < 64 tokens" in sweep_verdict(short).evidence
    broken = SweepResult(model="m", max_tokens=64, levels=(level(1, (), errors=1),))
    assert sweep_verdict(broken).status == "fail" and "1/1 requests failed: boom" in sweep_verdict(broken).evidence


def test_gate_verdicts_map_to_three_outcomes_and_state_the_resolution():
    same = gate_of([100, 101, 99, 100, 102, 100], [100, 100, 100, 101, 101, 99])
    passed = gate_verdict(same)
    assert passed.status == "pass" and "smallest resolvable change" in passed.evidence
    assert passed.data["resolution"] == same.levels[0].resolution
    slow = gate_of([100, 101, 99, 100, 102, 100], [80, 81, 79, 80, 82, 80])
    assert gate_verdict(slow).status == "fail" and gate_verdict(slow).evidence.startswith("regressed: c=1 ratio 0.80")
    noisy = gate_of([100, 140, 70, 120, 90, 100], [95, 70, 130, 80, 120, 90])
    wide_but_slow = gate_of([100, 140, 70, 120, 90, 100], [50, 90, 30, 60, 50, 40])
    assert wide_but_slow.verdict == "inconclusive" and wide_but_slow.levels[0].ci_high < 0.95
    assert gate_verdict(wide_but_slow, accept_inconclusive=True).status == "fail"
    assert noisy.verdict == "inconclusive"
    blocked = gate_verdict(noisy)
    assert blocked.status == "fail" and "not promoted (--accept-inconclusive accepts it)" in blocked.evidence
    accepted = gate_verdict(noisy, accept_inconclusive=True)
    assert accepted.status == "pass" and accepted.data["accepted_inconclusive"] is True


def test_without_a_known_good_the_gate_skips_and_says_nothing_was_resolved():
    recorded = SweepResult(model="m", max_tokens=64, levels=(level(1, (480.0,)),))
    result, run = check_gate(None, "http://127.0.0.1:9", sweep_spec(SmokeSettings(), "m", vllm), SETTINGS,
                             recorded=recorded)
    assert run is None and result.status == "skip" and NO_INTERVAL in result.evidence
    assert "context only" in result.data["context"] and "480.0" in result.data["context"]


def test_report_keeps_sweep_and_gate_and_reads_old_reports():
    sweep = SweepResult(model="m", max_tokens=64, levels=(level(1, (100.0, 102.0)),))
    gate = gate_of([100, 101, 99, 100, 102, 100], [100, 100, 100, 101, 101, 99])
    report = SmokeReport(cell="c", image="i", digest="d", model_id="m", checks=(sweep_verdict(sweep), gate_verdict(gate)),
                         ready_seconds=1, total_seconds=2, throughput_tps=101.0, sweep=sweep, gate=gate,
                         golden_profiles={"ngram": {"p": "x"}})
    data = json.loads(json.dumps(report.to_dict()))
    assert data["sweep"] == sweep.to_dict() and data["gate"]["verdict"] == "pass"
    assert {c["name"]: c for c in data["checks"]}["sweep"]["data"] == sweep.to_dict()
    back = SmokeReport.from_dict(data)
    assert back.sweep == sweep and back.gate is not None and back.gate.verdict == "pass"
    assert back.golden_profiles == {"ngram": {"p": "x"}}
    text = report.text()
    assert "tok/s(p50)" in text and "A/B gate: pass" in text and "resolves changes >=" in text
    old = {"passed": True, "cell": "c", "image": "i", "digest": "d", "model": "m", "throughput_tps": 400.0,
           "checks": [{"name": "throughput", "status": "pass", "evidence": "400 tok/s", "data": {}}]}
    legacy = SmokeReport.from_dict(old)
    assert legacy.passed and legacy.sweep is None and legacy.gate is None and legacy.throughput_tps == 400.0


def test_profiles_serve_with_their_args_and_env():
    from pathlib import Path

    from builder.proof.run import SmokeInputs, server_spec
    from builder.smoke.model import SmokeModel
    settings = SmokeSettings(args=("--max-model-len", "512"), env={"A": "1", "B": "2"},
                             profiles=(ServeProfile(name="eager", args=("--enforce-eager",), env={"B": "3"}),))
    inputs = SmokeInputs(cell_id="c", engine=vllm, arch="cpu", gpu=False, image="img", digest="d", settings=settings)
    model = SmokeModel(Path("/m"), "generated:tiny-llama@x")
    plain = server_spec(inputs, model, image="img")
    eager = server_spec(inputs, model, image="img", profile=settings.profiles[0])
    assert plain.args == ("--max-model-len", "512") and eager.args == ("--max-model-len", "512", "--enforce-eager")
    assert eager.env == {"A": "1", "B": "3"}
    assert server_spec(inputs, model, image="known-good@sha256:x").image == "known-good@sha256:x"


def url_smoke(*args: str):
    return run_builder("smoke", "--engine", "vllm", "--concurrency", "1,2", "--samples", "2", "--tokens", "24", *args)


def test_smoke_url_runs_checks_and_sweep_without_docker():
    with fake_engine_for_unit_tests(token_delay_s=0.002) as engine:
        done = url_smoke("--url", engine.url, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert statuses == {"models": "pass", "completions": "pass", "determinism": "pass", "backends": "skip", "tool_call": "skip",
                        "sweep": "pass", "gate": "skip"}, report["checks"]
    assert [lv["concurrency"] for lv in report["sweep"]["levels"]] == [1, 2]
    streamed = [b for b in engine.bodies if b.get("stream")]
    assert streamed and all(b["ignore_eos"] and b["max_tokens"] == 24 for b in streamed)


def test_smoke_url_gate_never_passes_a_slower_candidate():
    """Half the speed: regressed, or (on a loaded machine) inconclusive with the whole interval below the
    bound, which --accept-inconclusive does not accept."""
    with fake_engine_for_unit_tests(token_delay_s=0.002) as good, \
            fake_engine_for_unit_tests(token_delay_s=0.004) as slow:
        done = url_smoke("--url", slow.url, "--known-good-url", good.url, "--concurrency", "1",
                         "--accept-inconclusive", "--json")
    assert done.returncode == 1, done.stdout
    report = json.loads(done.stdout)
    gate = {c["name"]: c for c in report["checks"]}["gate"]
    assert gate["status"] == "fail" and report["gate"]["verdict"] in ("regressed", "inconclusive")
    assert report["gate"]["levels"][0]["ci_high"] < 0.95 and "smallest resolvable change" in gate["evidence"]


def test_smoke_url_exit_codes():
    assert url_smoke("--url", "ftp://x").returncode == 2
    assert url_smoke("--url", "http://127.0.0.1:1").returncode == 3  # nothing listens on port 1
    assert run_builder("smoke", "--known-good-url", "http://127.0.0.1:1").returncode == 2
    assert url_smoke("--url", "http://127.0.0.1:1", "--concurrency", "0").returncode == 2
    with fake_engine_for_unit_tests() as engine:
        assert url_smoke("--url", engine.url, "--known-good-url", "http://127.0.0.1:1").returncode == 3


def test_smoke_url_with_a_llamacpp_cell_runs_that_engines_hooks():
    """Regression: `smoke --url --cell llama.cpp-...` passed the cell's engine to the sweep but not to the checks,
    so its forced tool recipe ran as on vLLM (a FAIL where the container path SKIPs, saying why)."""
    with fake_engine_for_unit_tests(token_delay_s=0.001) as engine:
        done = run_builder("smoke", "--url", engine.url, "--cell", "llama.cpp-b11312-cpu", "--concurrency", "1",
                           "--samples", "2", "--tokens", "8", "--json")
    report = json.loads(done.stdout)
    tool = next(c for c in report["checks"] if c["name"] == "tool_call")
    assert tool["status"] == "skip" and "lazy" in tool["evidence"], tool
    assert tool["evidence"].startswith("recipe forced on llama.cpp:")


def test_smoke_url_needs_the_engine_or_a_cell():
    done = run_builder("smoke", "--url", "http://127.0.0.1:1")
    assert done.returncode == 2 and "--engine" in done.stderr and "--cell" in done.stderr
    wrong = url_smoke("--url", "http://127.0.0.1:1", "--cell", "llama.cpp-b11312-cpu")  # url_smoke says vllm
    assert wrong.returncode == 2 and "is not the engine of --cell" in wrong.stderr

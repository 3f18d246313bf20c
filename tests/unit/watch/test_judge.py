"""The judge's decisions with its parts injected (the image, the smoke run and the bisect are fakes
here; tests/integration/test_watch.py runs them for real)."""

from pathlib import Path

from builder.checkresult import CheckResult
from builder.errors import StepFailed
from builder.proof.report import SmokeReport
from builder.watch.culprit import Culprit, step_images
from builder.watch.judge import Judge, classify
from builder.watch.loop import Target
from builder.watch.releases import Release, check_release

TARGET = Target(engine="vllm", cell="vllm-0.32.0-cpu", known_label="0.32.0", known_versions=("0.32.0",))
DIGEST = "sha256:" + "e" * 64


def _report(*checks: CheckResult) -> SmokeReport:
    return SmokeReport(cell="c", image="i", digest=DIGEST, model_id="m", checks=checks, ready_seconds=1.0,
                       total_seconds=2.0, throughput_tps=None)


def _release() -> Release:
    got = check_release("vllm", "image", "0.33.5", "0.33.5", DIGEST, "r", package="127.0.0.1:5000/up/vllm:v0.33.5")
    assert isinstance(got, Release)
    return got


class StubProposer:
    def __init__(self):
        self.pins = []

    def write(self, target, release, pins=None):
        self.pins.append(pins)
        return Path("matrix.proposed.yaml"), ""


def test_a_failing_gate_alone_is_a_regression_and_a_failing_check_is_a_failure():
    ok = CheckResult("completions", "pass", "ok")
    assert classify(_report(ok, CheckResult("gate", "fail", "0.61x")), False)[0] == "failing"  # no gate result: unsure
    assert classify(_report(ok, CheckResult("determinism", "fail", "prompt 'x' row 2 differs")), False) == \
        ("failing", "determinism: prompt 'x' row 2 differs")
    assert classify(_report(ok), True)[0] == "promoted"
    assert classify(_report(ok), False)[0] == "passed"


def test_a_failing_release_is_bisected_and_its_recheck_kept():
    asked = []

    def culprit(target, release, metric):
        asked.append(metric)
        return Culprit(bisect={"first_bad": {"sha": "abc"}}, recheck={"status": "confirmed"})
    judge = Judge(proposer=StubProposer(), image_of=lambda t, r, p: ("img", DIGEST),  # type: ignore[arg-type]
                  smoke=lambda t, r, p, i, d: _report(CheckResult("determinism", "fail", "row 2")), culprit=culprit)
    outcome = judge(TARGET, _release())
    assert outcome.verdict == "failing" and asked == ["checks"]
    assert outcome.recheck == {"status": "confirmed"} and outcome.bisect["first_bad"]["sha"] == "abc"


def test_a_passing_release_is_not_bisected_and_an_untestable_one_says_why():
    def never(*a):
        raise AssertionError("bisected a passing release")
    passing = Judge(proposer=StubProposer(), image_of=lambda t, r, p: ("img", DIGEST),  # type: ignore[arg-type]
                    smoke=lambda *a: _report(CheckResult("completions", "pass", "ok")), culprit=never)
    assert passing(TARGET, _release()).verdict == "passed"

    untestable = Judge(proposer=StubProposer(), image_of=lambda t, r, p: None, smoke=never, culprit=never)  # type: ignore[arg-type]
    outcome = untestable(TARGET, _release())
    assert outcome.verdict == "found" and "builder build --matrix" in outcome.detail

    def pull_refused(t, r, p):
        raise StepFailed("registry refused the pull")
    broken = Judge(proposer=StubProposer(), image_of=pull_refused, smoke=never, culprit=never)  # type: ignore[arg-type]
    assert broken(TARGET, _release()).verdict == "failing"


def test_step_images_include_both_endpoints():
    data = {"candidates": 9, "images": {"4": "sha256:four"}, "endpoints": {"good_image": "sha256:g", "bad_image": "sha256:b"}}
    assert step_images(data) == {0: "sha256:g", 4: "sha256:four", 8: "sha256:b"}


def test_the_bisect_metric_follows_what_failed():
    from builder.watch.judge import bisect_metric
    ok = CheckResult("completions", "pass", "ok")
    assert bisect_metric(_report(ok, CheckResult("golden", "fail", "prompt 'a' changed"))) == "golden"
    assert bisect_metric(_report(ok, CheckResult("gate", "fail", "0.6x"))) == "throughput"
    assert bisect_metric(_report(ok, CheckResult("determinism", "fail", "row 2"))) == "checks"


def test_a_regressed_release_keeps_the_gates_interval_per_level():
    from dataclasses import replace

    from builder.measure.gate import GateResult, GateSettings, compare_level
    level = compare_level([200.0, 201.0, 199.0, 200.5, 198.0, 202.0], [160.0, 162.0, 158.0, 161.0, 159.0, 163.0],
                          concurrency=1)
    gate = GateResult.of([level], GateSettings())
    report = replace(_report(CheckResult("completions", "pass", "ok"), CheckResult("gate", "fail", "0.80x")), gate=gate)
    judge = Judge(proposer=StubProposer(), image_of=lambda t, r, p: ("img", DIGEST),  # type: ignore[arg-type]
                  smoke=lambda *a: report)
    outcome = judge(TARGET, _release())
    assert outcome.verdict == "regressed"
    [kept] = outcome.gate["levels"]
    assert outcome.gate["verdict"] == "regressed" and kept["concurrency"] == 1
    assert kept["ci_low"] < kept["ratio"] < kept["ci_high"] < 0.95 and kept["pairs"] == 6
    assert "baseline_tps" not in kept  # the samples stay in the smoke report, not in every watch record


def test_what_the_release_file_pins_reaches_the_proposal_and_a_bad_file_is_failing_not_built():
    proposer = StubProposer()
    built = []
    judge = Judge(proposer=proposer, image_of=lambda t, r, p: built.append(r) or ("img", DIGEST),  # type: ignore[arg-type]
                  smoke=lambda *a: _report(CheckResult("completions", "pass", "ok")), pins=lambda t, r: {"torch": "2.14.0"})
    assert judge(TARGET, _release()).verdict == "passed" and proposer.pins == [{"torch": "2.14.0"}]

    def mismatch(target, release):
        raise StepFailed("checksum mismatch for http://127.0.0.1/x.whl: expected sha256 a..., got b...")
    bad = Judge(proposer=StubProposer(), image_of=lambda t, r, p: built.append(r) or ("img", DIGEST),  # type: ignore[arg-type]
                smoke=lambda *a: _report(), pins=mismatch)
    outcome = bad(TARGET, _release())
    assert outcome.verdict == "failing" and outcome.detail.startswith("not tested: checksum mismatch")
    assert len(built) == 1  # only the first judge built anything


def test_a_large_slowdown_measured_too_noisily_for_a_gate_verdict_is_still_a_regression():
    """A busy 2-core runner (2026-12-03): c=1 ratio 0.065 [0.042, 0.101] with a half-width over the 15%
    threshold, so the gate stayed inconclusive; the whole interval is far under 0.85, so it is slower than
    allowed, and the watch bisects it by throughput instead of calling it a failed check."""
    from dataclasses import replace

    from builder.measure.gate import GateResult, GateSettings, compare_level
    from builder.watch.judge import bisect_metric
    noisy = compare_level([100.0, 300.0, 90.0, 400.0, 120.0, 250.0], [6.0, 25.0, 8.0, 20.0, 9.0, 14.0],
                          concurrency=1, threshold=0.15)
    assert noisy.verdict == "inconclusive" and noisy.ci_high < 0.85  # the case itself
    gate = GateResult.of([noisy], GateSettings(threshold=0.15))
    report = replace(_report(CheckResult("completions", "pass", "ok"), CheckResult("gate", "fail", "inconclusive")),
                     gate=gate)
    assert classify(report, False)[0] == "regressed" and bisect_metric(report) == "throughput"
    wide = compare_level([100.0, 300.0, 90.0, 400.0], [95.0, 100.0, 120.0, 300.0], concurrency=1, threshold=0.15)
    assert wide.verdict == "inconclusive" and wide.ci_high > 0.85  # noise alone: not a regression
    unsure = replace(report, gate=GateResult.of([wide], GateSettings(threshold=0.15)))
    assert classify(unsure, False)[0] == "failing"

"""The Measurer's verdicts, with the servers and the gate replaced by fakes (no Docker): the endpoints
are compared first and cached, a bad endpoint that shows nothing stops the bisect, the throughput
threshold is the endpoints' midpoint, a boot failure is a skip, and servers are started lazily."""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest

from builder.bisect import measure as measure_mod
from builder.bisect.driver import Endpoints
from builder.bisect.errors import BisectError
from builder.bisect.measure import Measurer, ServerTemplate
from builder.bisect.settings import MeasureSettings
from builder.engines import llamacpp, vllm
from builder.errors import StepFailed
from builder.jobs.workspace import Workspace
from tests.conftest import REPO
from builder.measure.gate import compare_level

ENDPOINTS = Endpoints(good="sha256:good", bad="sha256:bad")
TPS = {"sha256:good": 100.0, "sha256:bad": 50.0, "sha256:near-good": 97.0, "sha256:near-bad": 52.0}
TEXT = {"sha256:good": "a", "sha256:bad": "b", "sha256:same": "a", "sha256:other": "c"}


@pytest.fixture
def fakes(monkeypatch):
    seen = {"boots": [], "gates": [], "fields": []}

    @contextmanager
    def serve(client, spec, purpose):
        seen["boots"].append(spec.image)
        if spec.image == "sha256:broken":
            raise StepFailed(f"{spec.image} exited with code 1 before it was ready; last lines:\nImportError")
        yield SimpleNamespace(base_url=spec.image)

    def interleave(baseline_url, candidate_url, spec, settings, on_pair=None):
        seen["gates"].append(settings.threshold)
        seen.setdefault("engines", []).append(spec.engine)
        base, cand = TPS[baseline_url], TPS[candidate_url]
        jitter = (1.0, 1.01, 0.99, 1.0, 1.02, 0.98)
        level = compare_level([base * j for j in jitter], [cand * j for j in reversed(jitter)], concurrency=1,
                              threshold=settings.threshold, confidence=settings.per_look_confidence)
        return SimpleNamespace(gate=SimpleNamespace(verdict=level.verdict, levels=(level,)))

    monkeypatch.setattr(measure_mod, "serve", serve)
    monkeypatch.setattr(measure_mod, "interleave_servers", interleave)
    def generate(url, spec, max_tokens, *, prompt, **fields):
        seen["fields"].append(fields)
        return {"choices": [{"text": TEXT[url] + prompt[:3]}]}

    monkeypatch.setattr(measure_mod, "generate", generate)
    return seen


def measurer(tmp_path: Path, metric: str, endpoints: Endpoints = ENDPOINTS, engine=vllm, **settings) -> Measurer:
    template = ServerTemplate(engine=engine, gpu=False, model_dir=tmp_path)
    return Measurer(None, template, MeasureSettings(metric=metric, **settings), cell_id="c", endpoints=endpoints,  # type: ignore[arg-type]
                    cache_dir=tmp_path, audit_note="kernel audit skipped: cpu cell")


def test_throughput_verdicts_use_the_midpoint_of_the_endpoints(tmp_path, fakes):
    with measurer(tmp_path, "throughput") as m:
        assert m("sha256:near-good", ENDPOINTS, 1).verdict == "good"
        bad = m("sha256:near-bad", ENDPOINTS, 1)
    assert bad.verdict == "bad" and bad.metric["ratio"] == pytest.approx(0.52, abs=0.01)
    assert "kernel audit skipped" in bad.note
    assert fakes["gates"][0] == 0.05  # the reference: bad vs good at --min-effect
    assert fakes["gates"][1] == pytest.approx(1 - math.sqrt(0.5), abs=0.01)  # then the midpoint
    assert fakes["boots"].count("sha256:good") == 1  # resident for the session
    # the server's own clock times the tokens: without its engine only client arrival times remain, and vLLM's
    # CPU server streams in bursts that read as "the runner is too busy" (every step skipped, 2026-12-03)
    assert fakes["engines"] == [vllm] * len(fakes["gates"])


def test_the_reference_is_cached_and_servers_start_only_when_needed(tmp_path, fakes):
    with measurer(tmp_path, "golden") as m:
        m.reference()
    assert fakes["boots"] == ["sha256:good", "sha256:bad"]
    with measurer(tmp_path, "golden") as m:
        m.reference()
        assert m("sha256:same", ENDPOINTS, 1).verdict == "good"
    assert fakes["boots"] == ["sha256:good", "sha256:bad", "sha256:same"]


def test_golden_names_the_changed_prompt(tmp_path, fakes):
    with measurer(tmp_path, "golden") as m:
        result = m("sha256:other", ENDPOINTS, 1)
    assert result.verdict == "bad" and result.metric["changed_prompts"] == 6 and "first changed prompt" in result.note


def test_valid_utf8_sends_the_engines_fields_with_every_golden_request_and_has_its_own_cache(tmp_path, fakes):
    """llama-servers before llama-cpp-python 0.3.36's tree answer HTTP 500 for malformed UTF-8 in an output
    (measured in benchmarks/results/bisect-llamacpp-tier4/); --valid-utf8 asks for llama.cpp's grammar."""
    with measurer(tmp_path, "golden", engine=llamacpp) as m:
        m("sha256:same", ENDPOINTS, 1)
    assert fakes["fields"] and all(f == {} for f in fakes["fields"])  # off: the smoke run's plain requests
    fakes["fields"].clear()
    with measurer(tmp_path, "golden", engine=llamacpp, valid_utf8=True) as m:
        assert m("sha256:same", ENDPOINTS, 1).verdict == "good"
    assert len(fakes["fields"]) == 3 * 6  # good, bad and the step measured again: not the plain outputs' cache
    assert all(f == {"grammar": r"root ::= [^\x00]*"} for f in fakes["fields"])
    assert "valid_utf8" not in MeasureSettings().to_dict()  # off: the keys of older bisects' caches still match
    assert MeasureSettings(valid_utf8=True).to_dict()["valid_utf8"] is True


def test_a_bad_endpoint_that_shows_nothing_stops_the_bisect(tmp_path, fakes):
    same = Endpoints(good="sha256:good", bad="sha256:same")
    with pytest.raises(BisectError, match="equal the good one's"), measurer(tmp_path, "golden", same) as m:
        m.reference()
    slow = Endpoints(good="sha256:good", bad="sha256:near-good")
    with pytest.raises(BisectError, match="not measurably slower"), measurer(tmp_path, "throughput", slow) as m:
        m.reference()


def test_a_candidate_that_does_not_boot_is_a_skip(tmp_path, fakes):
    with measurer(tmp_path, "golden") as m:
        result = m("sha256:broken", ENDPOINTS, 1)
    assert result.verdict == "skip" and result.note.startswith("boot failed: sha256:broken exited with code 1")


def test_attempts_take_more_pairs():
    settings = MeasureSettings(pairs=4, max_pairs=10)
    assert settings.gate(0.2, 1).initial_pairs == 4 and settings.gate(0.2, 2).initial_pairs == 8
    assert settings.gate(0.2, 3).max_pairs == 30


def test_one_stalled_sample_does_not_hide_a_fivefold_slowdown():
    from builder.bisect.measure import side, sign_p
    good = [240.0, 250.0, 245.0, 4.0, 238.0, 244.0, 251.0, 242.0]  # one sample stalled by a neighbour
    slow = [48.0, 50.0, 47.0, 49.0, 46.0, 50.0, 48.0, 47.0]
    level = compare_level(good, slow, concurrency=1, threshold=0.2, confidence=0.95)
    assert level.ci_high > 0.8  # the t-interval alone cannot tell
    assert side(level, 0.8, 0.95) == "below"
    same = compare_level(good, list(reversed(good)), concurrency=1, threshold=0.2, confidence=0.95)
    assert side(same, 0.45, 0.95) == "above" or side(same, 0.45, 0.95) is None
    assert sign_p(8, 8) == 1 / 256 and sign_p(0, 8) == 1.0


def test_a_boot_failure_note_is_one_line_with_the_servers_last_log_line():
    from builder.bisect.measure import _boot_failure
    exc = Exception("img exited with code 1 before it was ready; last lines:\nTraceback (most recent call last):\n"
                    "  File \"api_server.py\", line 1\nImportError: injected: this commit cannot boot\n")
    assert _boot_failure(exc) == ("img exited with code 1 before it was ready; "
                                  "last log line: ImportError: injected: this commit cannot boot")
    assert _boot_failure(Exception("img was not ready within 8s; last lines:\n")) == "img was not ready within 8s"


def test_a_checks_bisect_of_a_llamacpp_gpu_cell_uses_its_engine_and_tie_tolerance(tmp_path):
    """Regression: `bisect --metric checks` built its SmokeSpec without the engine and the near-tie
    tolerance, so a llama.cpp GPU bisect ran vLLM's hooks and called near-tie flips regressions."""
    workspace = Workspace(REPO / "matrix.yaml")
    job = workspace.job(workspace.cell("llama.cpp-b11312-cu130-sm_90"))
    template = ServerTemplate.for_job(job, tmp_path, "tiny-f32.gguf")
    spec = template.smoke_spec(MeasureSettings(metric="checks"))
    assert spec.engine is llamacpp and spec.tie_nats == 0.005 and spec.tool_recipe == job.smoke.tool_recipe
    assert template.spec("img").engine is llamacpp and template.spec("img").model_file == "tiny-f32.gguf"


def test_a_checks_step_keeps_the_failing_checks_own_evidence(tmp_path, fakes, monkeypatch):
    """Issue 22: a `checks` step said only `failed: determinism`; it must say which prompt and how."""
    from builder.checkresult import CheckResult

    def passing(name):
        return lambda url, spec: CheckResult(name=name, status="pass", evidence="ok")

    def determinism(url, spec):
        if url == "sha256:good":
            return CheckResult(name="determinism", status="pass", evidence="ok"), None
        return CheckResult(name="determinism", status="fail",
                           evidence="prompt 'The capital of France' row 2 of 4 differs under concurrency: "
                                    "'Paris is' vs 'Paris was'"), None
    monkeypatch.setattr(measure_mod, "check_models", passing("models"))
    monkeypatch.setattr(measure_mod, "check_completions", passing("completions"))
    monkeypatch.setattr(measure_mod, "check_determinism", determinism)
    monkeypatch.setattr(measure_mod, "check_tool_call", passing("tool_call"))
    with measurer(tmp_path, "checks") as m:
        reference = m.reference()
        result = m("sha256:other", ENDPOINTS, 1)
    assert result.verdict == "bad"
    assert "determinism (prompt 'The capital of France' row 2 of 4" in result.note and "'Paris was'" in result.note
    assert reference["bad_failed"] == ["determinism"] and "row 2 of 4" in reference["bad_evidence"]["determinism"]

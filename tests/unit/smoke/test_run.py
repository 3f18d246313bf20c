"""The smoke run's inputs: the gate's baseline is the known-good image, not a recorded number."""

from __future__ import annotations


def test_inputs_name_the_known_good_image_and_keep_its_sweep_as_context():
    import dataclasses

    from builder.smoke.run import SmokeInputs
    fields = {f.name for f in dataclasses.fields(SmokeInputs)}
    assert {"known_good_image", "known_good_sweep", "accept_inconclusive"} <= fields
    assert not {"baseline_tps", "baseline_measure"} & fields  # no verdict from a recorded number


def test_the_sweep_serves_its_own_model_only_when_one_is_set():
    import dataclasses

    from builder.matrix.smoke_settings import SmokeSettings, SweepSettings
    from builder.smoke.run import SmokeInputs, _perf_model
    base = SmokeSettings(model="generated:tiny-llama")
    inputs = SmokeInputs(cell_id="c", engine="vllm", arch="cpu", gpu=False, image="img", digest="d", settings=base)
    assert _perf_model(inputs, client=None) is None  # no sweep.model: the smoke model
    same = dataclasses.replace(base, sweep=SweepSettings(model="generated:tiny-llama"))
    assert _perf_model(dataclasses.replace(inputs, settings=same), client=None) is None

"""The smoke run's inputs: the gate's baseline is the known-good image, not a recorded number."""

from __future__ import annotations


def test_inputs_name_the_known_good_image_and_keep_its_sweep_as_context():
    import dataclasses

    from builder.smoke.run import SmokeInputs
    fields = {f.name for f in dataclasses.fields(SmokeInputs)}
    assert {"known_good_image", "known_good_sweep", "accept_inconclusive"} <= fields
    assert not {"baseline_tps", "baseline_measure"} & fields  # no verdict from a recorded number

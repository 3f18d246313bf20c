"""The controls of the consistency checks on the real vLLM cpu image: the cell's image plus an overlay patch record
(built by `builder build` as the cell's overlay mode, FROM the image by digest) whose sampler (1) mixes up the rows
of the batch when more than one request is in flight, and (2) computes logprobs from logits scaled by 5%, which
changes no greedy text. Sequential requests stay correct; the determinism check must fail it under concurrency and
name the token, and the golden scores check must see the drift while the golden texts still match. The good image
passes both checks (its smoke tests, in test_smoke_cpu.py)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import textwrap

import pytest

from builder.engines import vllm
from builder.matrix.smoke_settings import SmokeSettings
from builder.smoke.checks import check_determinism, check_golden
from builder.smoke.golden_scores import check_golden_scores, read_golden_scores
from builder.smoke.model import resolve_model
from builder.smoke.openai import SmokeSpec
from builder.smoke.server import ServerSpec, serve
from tests.conftest import REPO, run_builder
from tests.integration.cpu_cell import CELL

pytestmark = pytest.mark.integration


DRIFT = 1.05  # logits scaled by 5% before the logprobs: every argmax, so every greedy text, stays


def _garble_module():
    spec = importlib.util.spec_from_file_location("controls", REPO / "benchmarks" / "gpu" / "controls.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def garbled_image(cpu_build, docker_client, tmp_path_factory):
    """The cpu cell's image with the garble overlay, built through the factory's own overlay mechanism."""
    garble = _garble_module()
    image = cpu_build["record"]["image"]
    digest_ref = f"{image.rsplit(':', 1)[0]}@{cpu_build['record']['digest']}"
    original = docker_client.containers.run(image, remove=True, entrypoint=[
        "python3", "-c", "import sys, vllm.v1.sample.sampler as s; sys.stdout.write(open(s.__file__).read())"])
    work = tmp_path_factory.mktemp("garble")
    text = (REPO / "matrix.yaml").read_text()
    pin = '"0.32.0": {torch: "2.13.0"}'
    assert pin in text
    text = text.replace(pin, f'"0.32.0": {{torch: "2.13.0", images: {{cpu: "{digest_ref}"}}}}')
    text = text.replace("\nexclude:", '\n  - engine: vllm\n    versions: ["0.32.0"]\n    archs: [cpu]\n'
                                      "    mode: overlay\n\nexclude:", 1)
    (work / "matrix.yaml").write_text(text)
    record = work / "patches" / "vllm" / "control-garble-rows"
    record.mkdir(parents=True)
    (record / "sampler.py").write_text(garble.drift(garble.garble(original.decode()), DRIFT))
    (record / "patch.yaml").write_text(textwrap.dedent(f"""\
        id: control-garble-rows
        engine: vllm
        description: consistency controls - the sampler mixes up the rows of the batch when batched, and its logprobs drift
        upstream: none (test control)
        applies_to: ">=0.32"
        archs: [cpu]
        kind: overlay
        target: {garble.TARGET}
        file: sampler.py
        derived_from_sha256: "{hashlib.sha256(original).hexdigest()}"
        """))
    done = run_builder("build", "--matrix", str(work / "matrix.yaml"), "--cell", f"{CELL}-overlay",
                       "--registry", cpu_build["registry"].host, "--workdir", str(work / "build"), timeout=1800)
    assert done.returncode == 0, f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return json.loads((work / "build" / "logs" / f"{CELL}-overlay.json").read_text())["image"]


def test_the_controls_fail_the_determinism_and_golden_scores_checks(garbled_image, docker_client, promoted):
    from builder.matrix.load import load_matrix
    settings: SmokeSettings = load_matrix(REPO / "matrix.yaml").engines["vllm"].smoke_for("cpu")
    model = resolve_model(settings, garbled_image, docker_client, engine=vllm, gpu=False)
    spec = ServerSpec(image=garbled_image, engine=vllm, gpu=False, model_dir=model.directory, served_name="smoke",
                      args=settings.args, env=settings.env, shm_size=settings.shm_size,
                      ready_timeout=settings.ready_timeout)
    with serve(docker_client, spec, "smoke-garble-control") as server:
        checks = SmokeSpec.from_settings(settings, served_name="smoke", engine=vllm)
        exact, outputs = check_determinism(server.base_url, checks)
        known_good = read_golden_scores(promoted["report"]["golden_scores"])
        golden = check_golden(outputs, promoted["report"]["golden"], model.model_id, promoted["report"]["model"])
        scores = check_golden_scores(server.base_url, checks, known_good, settings.golden_nats)
    print(exact.evidence, golden.evidence, scores.evidence, sep="\n")
    # exact (the cpu cell's rule): the rounds were identical, the concurrent phase differs, and the evidence names
    # the worst token of the differing output as the server itself scores it
    assert exact.status == "fail" and exact.evidence.startswith(f"{max(checks.concurrency, len(checks.prompts))} "
                                                                "concurrent: prompt ")
    assert "lies" in exact.evidence and "nats below the server's argmax" in exact.evidence
    worst = exact.data["worst"]
    assert worst["flipped"] >= 1 and worst["prompt"] in checks.prompts
    assert worst["deficit"] == "inf" or worst["deficit"] > 0
    # the drift changes no greedy text: the golden outputs match; their scores moved beyond the cell's bound
    assert known_good and golden.status == "pass", golden.evidence
    assert scores.status == "fail" and scores.evidence.endswith(f"more than {settings.golden_nats:g}")

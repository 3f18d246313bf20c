"""The llama.cpp cpu cell for real: llama-server built from the pinned llama-cpp-python sdist with
BuildKit (layer cache + a ccache mount: a rerun is a cache hit; the cold build took 35 min on a busy
2-core box), pushed to a real registry, smoke-tested with the tiny GGUF (made offline from the tiny
Llama inside the promoted vllm-cpu image, converted by the image's own vendored converter), promoted;
a second smoke compares with the golden outputs it recorded. In a registry of its own, so the vLLM
tests' first-known-good expectations are untouched: the helper is the session's vllm-cpu image, tagged
locally as the friendly name the matrix's model_helper resolves to (the Engine has it: no pull)."""

from __future__ import annotations

import json
import time

import pytest

from builder.oci.registry import RegistryClient
from tests.conftest import run_builder
from tests.integration.conftest import start_registry, stop_registry
from tests.integration.cpu_cell import CELL as VLLM_CELL
from tests.integration.cpu_cell import REPOSITORY
from tests.integration.cpu_cell import assert_honest_levels

pytestmark = pytest.mark.integration
CELL = "llama.cpp-b11312-cpu"


@pytest.fixture(scope="module")
def llama_registry(registry_bin, tmp_path_factory):
    server = start_registry(registry_bin, tmp_path_factory.mktemp("registry-llamacpp"))
    yield server
    stop_registry(server)


@pytest.fixture(scope="module")
def llama_built(cpu_build, llama_registry, docker_client, tmp_path_factory):
    registry = llama_registry
    # The model helper's tested image, as a promotion leaves it: the friendly tag in the registry (without
    # it the build adds the vllm cpu cell, and builds and smokes it first).
    docker_client.images.get(cpu_build["record"]["image"]).tag(f"{registry.host}/{REPOSITORY}", VLLM_CELL)
    for line in docker_client.images.push(f"{registry.host}/{REPOSITORY}", tag=VLLM_CELL, stream=True, decode=True):
        assert "error" not in line, line
    workdir = tmp_path_factory.mktemp("llamacpp")
    started = time.monotonic()
    done = run_builder("build", "--cell", CELL, "--registry", registry.host, "--workdir", str(workdir),
                       "--smoke", "--promote")
    return {"done": done, "seconds": time.monotonic() - started, "workdir": workdir, "registry": registry,
            "record": json.loads((workdir / "logs" / f"{CELL}.json").read_text()),
            "report": json.loads((workdir / "reports" / f"{CELL}.json").read_text())}


def test_built_pushed_smoked_and_promoted(llama_built, docker_client):
    done, report, record = llama_built["done"], llama_built["report"], llama_built["record"]
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert "added " not in done.stderr  # the helper's tested image is in the registry: nothing else built
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["kernels"]["status"] == "skip"  # cpu: nothing to audit
    assert checks["golden"]["status"] == "skip"  # the first known-good
    assert checks["tool_call"]["status"] == "skip" and "lazy" in checks["tool_call"]["evidence"]
    assert checks["gate"]["status"] == "skip"  # no known-good image to measure beside it yet
    for name in ("models", "completions", "determinism", "sweep"):
        assert checks[name]["status"] == "pass", checks[name]
    levels = report["sweep"]["levels"]  # over the 4 slots, at depths 0 and 128 (128 + 64 tokens fit a slot's 512)
    assert [(lv["depth"], lv["concurrency"]) for lv in levels] == [(d, c) for d in (0, 128) for c in (1, 2, 4)]
    assert_honest_levels(levels)  # llama-server's own timings (the last chunk's `timings`) are the recorded clock
    assert "max_model_len 512" in checks["models"]["evidence"]  # 2048 context over 4 slots
    assert "6 concurrent requests" in checks["determinism"]["evidence"]  # more requests than the 4 slots
    assert report["passed"] and report["golden"]
    # the headline figure is the depth-0 c=1 level's; a busy runner withholds it (no figure, never a guess)
    first = levels[0]
    assert report["throughput_tps"] == (round(first["tps_p50"], 1) if first["tps_p50"] else None)
    assert report["throughput_tps"] or first.get("unmeasured"), first
    assert report["model"].startswith("generated:tiny-llama-gguf@")
    client = RegistryClient(llama_built["registry"].host)
    assert client.head_manifest(REPOSITORY, CELL).digest == record["digest"]
    labels = docker_client.images.get(record["image"]).labels
    assert labels["org.llmfactory.engine"] == "llama.cpp" and labels["org.llmfactory.mode"] == "source"
    version = docker_client.containers.run(record["image"], ["--version"], remove=True, stderr=True).decode()
    assert "build 11312, commit 0c1e57098" in version  # "version: 0.5.0-dev (build 11312, commit 0c1e57098)"


def test_second_smoke_matches_the_golden_outputs(llama_built):
    host = llama_built["registry"].host
    # the gate boots the known-good beside it: on 2 loaded cores it may stay inconclusive; this test is
    # about the golden outputs
    again = run_builder("smoke", "--cell", CELL, "--registry", host, "--json", "--threshold", "0.9",
                        "--accept-inconclusive")
    checks = {c["name"]: c for c in json.loads(again.stdout)["checks"]}
    assert checks["golden"]["status"] == "pass", checks["golden"]
    assert checks["gate"]["status"] != "fail", checks["gate"]


def test_rebuild_is_a_registry_lookup(llama_built):
    done = run_builder("build", "--cell", CELL, "--registry", llama_built["registry"].host,
                       "--workdir", str(llama_built["workdir"]))
    assert done.returncode == 0 and "up to date" in done.stdout, done.stderr


def test_near_tie_flips_are_read_from_the_real_servers_logprobs(llama_built, docker_client):
    """The GPU cells tolerate near-tie flips (matrix: determinism_tie_nats); the real llama-server's
    /v1/completions logprobs are what that reads. Here, on the cpu image: the sequential run's tokens
    spell its text, and an output that takes the runner-up at a token is judged at that token."""
    from builder.matrix.cells import expand
    from builder.matrix.load import load_matrix
    from builder.engines import llamacpp
    from builder.smoke.model import resolve_model
    from builder.smoke.openai import DEFAULT_PROMPTS, SmokeSpec, generate
    from builder.smoke.server import ServerSpec, serve
    from builder.smoke.ties import find_flip, positions
    from tests.conftest import REPO

    cell = {c.id: c for c in expand(load_matrix(REPO / "matrix.yaml")).cells}[CELL]
    settings = cell.engine.smoke_for("cpu")
    image = llama_built["record"]["image"]
    helper = f"{llama_built['registry'].host}/{REPOSITORY}:{VLLM_CELL}"  # tagged by llama_built
    model = resolve_model(settings, image, docker_client, engine=llamacpp, helper_image=helper)  # the smoke run's cached GGUF
    spec = ServerSpec(image=image, engine=llamacpp, gpu=False, model_dir=model.directory, served_name="smoke",
                      model_file=model.file, args=settings.args, ready_timeout=120)
    with serve(docker_client, spec, "ties") as server:
        response = generate(server.base_url, SmokeSpec(served_name="smoke", engine=llamacpp, max_tokens=16), 16, prompt=DEFAULT_PROMPTS[0],
                            logprobs=2)
    text, tokens = response["choices"][0]["text"], positions(response)
    assert len(tokens) == 16 and "".join(t.text for t in tokens) == text
    # a token whose runner-up shares no prefix with it: the flip is then seen at that token
    k = next(i for i, t in enumerate(tokens)
             if len(t.top) == 2 and t.top[1][0] and t.text and t.top[1][0][0] != t.text[0])
    flipped = "".join(t.text for t in tokens[:k]) + tokens[k].top[1][0] + "x"
    flip = find_flip(tokens, text, flipped, 10.0)
    assert flip.token == k and flip.runner_up_taken and flip.within
    assert flip.gap == tokens[k].top[0][1] - tokens[k].top[1][1] >= 0
    assert not find_flip(tokens, text, flipped, flip.gap / 2 if flip.gap else 0).within

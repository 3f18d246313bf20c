"""The smoke test on the real vLLM cpu image with a tiny random-weight model made offline inside
the image: every check that applies to cpu, the sweep, the golden check and the A/B gate (the known-good
image booted beside the candidate: two vllm-cpu containers on the runner), promotion only of passing
images, and broken images failing fast without leaving containers behind."""

from __future__ import annotations

import dataclasses
import json
import re
import time

import pytest

from builder.oci.registry import RegistryClient
from builder.promotion.store import RecordStore
from tests.conftest import run_builder
from tests.integration.conftest import (  # the `promoted` fixture is there too (test_board.py shares it)
    build_and_push,
    smoke,
)
from tests.integration.cpu_cell import CELL, REPOSITORY, assert_honest_levels

pytestmark = pytest.mark.integration



def smoke_containers(client) -> set[str]:
    return {c.id for c in client.containers.list(all=True, filters={"label": "org.llmfactory.smoke=1"})}


@pytest.fixture
def leftover_smoke_containers(docker_client):
    """The smoke containers made since the test began (CI runners keep the Engine between jobs, and a
    job killed earlier may have left its own behind: those are not this test's)."""
    before = smoke_containers(docker_client)
    return lambda: smoke_containers(docker_client) - before


def test_all_cpu_checks_pass_and_the_image_is_promoted(promoted):
    done, report = promoted["done"], promoted["report"]
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert statuses.pop("kernels") == "skip"  # cpu: nothing to audit
    assert statuses.pop("golden") == "skip"  # first known-good: nothing to compare with yet
    assert statuses.pop("gate") == "skip"  # no known-good image to measure beside it yet
    assert statuses.pop("backends") == "skip"  # vLLM's CPU path names no attention backend in its log
    assert statuses.pop("golden_scores") == "skip"  # nothing recorded yet: this run records them
    assert report["golden_scores"] and all(len(s["logprobs"]) == len(s["output_ids"]) for s in report["golden_scores"].values())
    assert set(statuses.values()) == {"pass"}, report["checks"]
    assert {"models", "completions", "determinism", "tool_call", "sweep"} <= set(statuses)
    assert report["passed"] is True and report["golden"]
    levels = report["sweep"]["levels"]
    assert [(lv["depth"], lv["concurrency"]) for lv in levels] == [(d, c) for d in (0, 128) for c in (1, 2, 4)]
    assert all(lv["tokens_min"] == report["sweep"]["max_tokens"] for lv in levels)
    assert_honest_levels(levels)
    c1 = levels[0]
    assert report["throughput_tps"] == (round(c1["tps_p50"], 1) if c1["tps_p50"] else None)
    client = RegistryClient(promoted["registry"].host)
    assert client.head_manifest(REPOSITORY, CELL).digest == promoted["record"]["digest"]
    text = (promoted["reports"] / f"{CELL}.txt").read_text()
    # readable in ten seconds: the checks (two more since), one sweep row per depth and level, a withheld level's reason
    notes = sum(bool(lv["unmeasured"] or lv["client_note"]) for lv in levels)
    assert text.startswith("smoke PASSED") and len(text.splitlines()) <= 18 + 2 + (len(levels) - 3) + notes
    assert "tok/s(p50)" in text and "no interval" in text


def test_known_good_list_and_export_show_the_promotion(promoted, tmp_path):
    host = promoted["registry"].host
    listed = run_builder("known-good", "list", "--registry", host)
    assert listed.returncode == 0 and CELL in listed.stdout and promoted["record"]["digest"][:19] in listed.stdout
    lock = tmp_path / "images.lock.yaml"
    assert run_builder("known-good", "export", "--registry", host, "--out", str(lock)).returncode == 0
    assert f"{CELL}: {host}/{REPOSITORY}@{promoted['record']['digest']}" in lock.read_text()


def test_golden_check_passes_against_itself_and_fails_when_altered(promoted):
    """Also: an absurd recorded number (a sweep of 10^6 tok/s in the known-good record) does not fail the
    image: the verdict comes from the known-good image measured beside it; the record is shown as context.
    One smoke run proves all of it (each run boots two vllm-cpu servers, minutes on two cores): one golden
    output of the record is altered, so the golden check must fail naming that prompt, while the image's own
    outputs reproduce every golden output the known-good recorded (it is the known-good image itself)."""
    host = promoted["registry"].host
    store = RecordStore(RegistryClient(host), REPOSITORY)
    record = store.get_known_good(CELL)
    assert record.sweep and record.sweep["levels"]  # promotion kept the sweep
    inflated = {**record.sweep, "levels": [{**lv, "sample_tps": [1e6]} for lv in record.sweep["levels"]]}
    prompt = sorted(record.golden)[0]
    altered = {**record.golden, prompt: record.golden[prompt] + " tampered"}
    store.put_known_good(dataclasses.replace(record, sweep=inflated, golden=altered))
    try:
        # --threshold 0.9: this test is about outputs and the gate's plumbing; 2 shared cores are noisy
        done = smoke(promoted["registry"], promoted["record"]["image"], "--threshold", "0.9")
        assert done.returncode == 1, done.stderr  # the altered golden output, and nothing else
        report = json.loads(done.stdout)
        checks = {c["name"]: c for c in report["checks"]}
        assert report["golden"] == record.golden  # against itself: every golden output reproduced
        golden = checks["golden"]
        assert golden["status"] == "fail" and prompt[:20] in golden["evidence"] and golden["data"]["prompt"] == prompt
        assert [name for name, c in checks.items() if c["status"] == "fail"] == ["golden"]
        # the same image scores the known-good's goldens as the known-good itself did (teacher forcing)
        assert record.golden_scores and checks["golden_scores"]["status"] == "pass", checks["golden_scores"]
        print("golden_scores, same image:", checks["golden_scores"]["evidence"])
        # the known-good image ran beside the candidate (here: itself) and the samples were interleaved
        gate = checks["gate"]
        assert gate["status"] == "pass" and gate["data"]["known_good"].endswith(promoted["record"]["digest"])
        assert [lv["concurrency"] for lv in gate["data"]["levels"]] == [1, 2, 4]
        assert all(lv["pairs"] >= 6 for lv in gate["data"]["levels"]) and "smallest resolvable change" in gate["evidence"]
        assert "1000000.0" in gate["data"]["context"] and "context only" in gate["data"]["context"]
    finally:
        store.put_known_good(record)


def push_broken_image(cpu_build, docker_client, entrypoint: list[str], name: str) -> str:
    """An image labelled as the cpu cell whose server never comes up."""
    dockerfile = (f"FROM {cpu_build['record']['image']}\n"
                  f"LABEL org.llmfactory.cell={CELL}\nENTRYPOINT {json.dumps(entrypoint)}\n")
    return build_and_push(docker_client, dockerfile, f"{cpu_build['registry'].host}/{REPOSITORY}:{CELL}-broken-{name}")


def test_broken_image_fails_fast_with_its_logs_and_leaves_nothing(cpu_build, docker_client, leftover_smoke_containers):
    ref = push_broken_image(cpu_build, docker_client,
                            ["python3", "-c", "import sys; print('engine exploded at start'); sys.exit(3)"], "exit")
    started = time.monotonic()
    done = smoke(cpu_build["registry"], ref, "--promote")
    assert done.returncode == 1
    assert time.monotonic() - started < 60  # the exit is seen at once, not after the ready deadline
    boot = {c["name"]: c for c in json.loads(done.stdout)["checks"]}["boot"]
    assert "exited with code 3" in boot["evidence"] and "engine exploded at start" in boot["data"]["log"]
    assert not leftover_smoke_containers()
    client = RegistryClient(cpu_build["registry"].host)
    broken = client.head_manifest(REPOSITORY, ref.rsplit(":", 1)[1]).digest
    friendly = client.head_manifest(REPOSITORY, CELL)
    assert friendly is None or friendly.digest != broken  # a bad image is never promoted


def test_never_healthy_image_fails_at_the_deadline(cpu_build, docker_client, tmp_path, leftover_smoke_containers):
    from tests.conftest import REPO
    ref = push_broken_image(cpu_build, docker_client, ["python3", "-c", "import time; time.sleep(3600)"], "hang")
    matrix = tmp_path / "matrix.yaml"
    text, replaced = re.subn(r"ready_timeout: \d+", "ready_timeout: 8", (REPO / "matrix.yaml").read_text())
    assert replaced, "matrix.yaml sets no ready_timeout any more: this test must set the cpu cell's another way"
    matrix.write_text(text)
    started = time.monotonic()
    done = run_builder("smoke", ref, "--registry", cpu_build["registry"].host, "--json", "--matrix", str(matrix),
                       timeout=300)
    assert done.returncode == 1 and time.monotonic() - started < 60
    boot = {c["name"]: c for c in json.loads(done.stdout)["checks"]}["boot"]
    assert "was not ready within 8s" in boot["evidence"]
    assert not leftover_smoke_containers()


def test_tiny_model_is_made_offline_and_byte_identical(cpu_build, docker_client, tmp_path):
    from builder.matrix.smoke_settings import SmokeSettings
    from builder.engines import vllm
    from builder.smoke.model import resolve_model
    from builder.smoke.tinymodel import fingerprint
    settings = SmokeSettings(model="generated:tiny-llama")
    one = resolve_model(settings, cpu_build["record"]["image"], docker_client, engine=vllm, cache=tmp_path / "a")
    two = resolve_model(settings, cpu_build["record"]["image"], docker_client, engine=vllm, cache=tmp_path / "b")
    assert one.model_id == two.model_id and (one.directory / "config.json").is_file()
    assert fingerprint(one.directory) == fingerprint(two.directory)


def test_sigterm_during_a_smoke_test_removes_its_container(cpu_build, docker_client, leftover_smoke_containers):
    import signal
    import subprocess
    import sys

    from tests.conftest import REPO
    child = subprocess.Popen([sys.executable, "-m", "builder", "smoke", cpu_build["record"]["image"], "--registry",
                              cpu_build["registry"].host], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while not leftover_smoke_containers():
            assert child.poll() is None and time.monotonic() < deadline, "the smoke container never started"
            time.sleep(0.5)
        child.send_signal(signal.SIGTERM)  # what a CI runner does when a job is cancelled
        assert child.wait(timeout=60) != 0
    finally:
        if child.poll() is None:
            child.kill()
    assert not leftover_smoke_containers()

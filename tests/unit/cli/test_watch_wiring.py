"""The bisect a watch starts for a regressed release: the same ladder `builder bisect` climbs. A llama.cpp
release has no Python to overlay, so without tier 4's settings every commit of its bisect was a skip
(found by benchmarks/watch_llamacpp_tier4.py). Real matrix, real git repository; the registry's record
store is a stand-in that answers the known-good records a registry would hold."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace

from builder.buildkit import tool
from builder.cli.watch_wiring import bisect_request
from builder.jobs.workspace import Workspace
from builder.watch.loop import Target
from builder.watch.releases import check_release

REPO = Path(__file__).resolve().parents[3]
KNOWN = "127.0.0.1:5000/llm-factory/images:llama.cpp-b11312-cpu-0123456789abcdef"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
                               "GIT_COMMITTER_EMAIL": "t@e", "PATH": "/usr/bin:/bin", "HOME": str(repo)}).stdout.strip()


def _history(tmp_path: Path) -> tuple[Path, list[str]]:
    """b11312, a C++ culprit, b11400: the shape of a llama.cpp release's history."""
    repo = tmp_path / "llama.cpp"
    (repo / "src").mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    shas = []
    for n, (text, tag) in enumerate([("greedy", "b11312"), ("second best", None), ("second best // note", "b11400")]):
        (repo / "src" / "llama-sampler.cpp").write_text(text + "\n")
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", f"c{n}")
        shas.append(_git(repo, "rev-parse", "HEAD"))
        if tag:
            _git(repo, "tag", tag)
    return repo, shas


def test_a_llama_cpp_release_is_bisected_with_full_builds_and_the_known_good_as_tier_1(tmp_path, monkeypatch):
    monkeypatch.setattr(tool, "detect_build_tool", lambda: "the BuildKit client")  # no docker binary asked
    repo, shas = _history(tmp_path)
    work = Workspace(REPO / "matrix.yaml", "127.0.0.1:5000")
    records = {"llama.cpp-b11312-cpu": SimpleNamespace(image=KNOWN)}
    store = SimpleNamespace(get_known_good=records.get)
    client = SimpleNamespace(docker_auth=lambda: None)
    target = Target(engine="llama.cpp", cell="llama.cpp-b11312-cpu", known_label="b11312", known_versions=("11312",))
    release = check_release("llama.cpp", "git", "b11400", "11400", shas[2], f"file://{repo}")
    assert not hasattr(release, "reason")

    request = bisect_request(work, client, store, target, release, "golden", repo)  # type: ignore[arg-type]

    assert (request.good, request.bad, request.image) == (shas[0], shas[2], KNOWN)
    assert request.full_build is not None and request.full_build.tool == "the BuildKit client"  # tier 4 reachable
    assert request.known_images == {shas[0]: KNOWN}  # tier 1: the known-good's release commit is pulled, not built
    assert request.settings.metric == "golden"
    assert request.helper_image == "127.0.0.1:5000/llm-factory/images:vllm-0.32.0-cpu"  # converts the GGUF model


def test_a_wheel_cell_release_has_no_full_build(tmp_path, monkeypatch):
    """The cpu vLLM cell installs a released wheel: nothing to build at a commit, its steps stay overlays."""
    monkeypatch.setattr(tool, "detect_build_tool", lambda: "the BuildKit client")
    repo, shas = _history(tmp_path)
    _git(repo, "tag", "v0.32.0", shas[0])
    work = Workspace(REPO / "matrix.yaml", "127.0.0.1:5000")
    store = SimpleNamespace(get_known_good={"vllm-0.32.0-cpu": SimpleNamespace(image=KNOWN)}.get)
    target = Target(engine="vllm", cell="vllm-0.32.0-cpu", known_label="0.32.0", known_versions=("0.32.0",))
    release = check_release("vllm", "git", "0.33.5", "0.33.5", shas[2], f"file://{repo}")
    request = bisect_request(work, SimpleNamespace(docker_auth=lambda: None), store, target, release,  # type: ignore[arg-type]
                             "throughput", repo)
    assert request.full_build is None and request.good == shas[0]

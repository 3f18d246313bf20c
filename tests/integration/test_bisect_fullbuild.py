"""Tier 4 through the real Docker Engine and BuildKit, in seconds: the llama.cpp cpu cell's job with its
template replaced by a small one (first in the job's template roots) that extracts the source archive and
keeps a build counter in a BuildKit cache mount. What it shows of fullbuild.py: each commit's own tree is in
its image (the archive substituted for the pinned source), the step image is local, labelled with the
commit, and found by its tag on a rerun (nothing built), and the ccache statistics come from BuildKit's log.
The real template's compile is measured by benchmarks/bisect_llamacpp_tier4.py (30-70 min cold here)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from builder.bisect.candidates import GitRepo
from builder.bisect.fullbuild import FullBuilder, FullBuildSettings
from builder.bisect.session import BisectRequest, check_model_helper
from builder.bisect.sourcebuild import BISECT_LABEL, COMMIT_LABEL, LOCAL_REPOSITORY, CcacheStats
from builder.buildkit.tool import detect_build_tool
from builder.errors import StepFailed
from builder.jobs.workspace import Workspace
from tests.conftest import REPO
from tests.integration.conftest import push_image, start_registry, stop_registry
from tests.unit.bisect.lab import commit, git

pytestmark = pytest.mark.integration
CELL = "llama.cpp-b11312-cpu"
HELPER = "vllm-0.32.0-cpu"  # the llama.cpp cpu cell's smoke.model_helper in matrix.yaml
# The counter lives in a cache mount of its own (a fresh id per run), never in the real ccache mount.
TEMPLATE = """FROM {{{{ base_from | word }}}}
COPY source/{{{{ source_file | word }}}} /opt/src.tar.gz
COPY provenance.json /opt/provenance.json
RUN --mount=type=cache,id={cache_id},target=/cache \\
    mkdir /opt/tree && tar -xzf /opt/src.tar.gz --strip-components=1 -C /opt/tree \\
    && seen=$(cat /cache/builds 2>/dev/null || echo 0) \\
    && echo $((seen + 1)) > /cache/builds \\
    && printf 'direct_cache_hit\\t%s\\npreprocessed_cache_hit\\t0\\ncache_miss\\t1\\n' "$seen"
"""


@pytest.fixture
def history(tmp_path: Path) -> tuple[GitRepo, list[str]]:
    root = tmp_path / "llama.cpp"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    shas = [commit(root, "tree A", {"tools/server/server.cpp": "// A\n"}),
            commit(root, "tree B (#2)", {"tools/server/server.cpp": "// B\n", "src/llama-sampler.cpp": "// new\n"})]
    return GitRepo(path=root), shas


def test_each_commit_is_built_from_its_own_tree_locally_and_found_again(docker_client, cpu_base, history, tmp_path):
    repo, shas = history
    templates = tmp_path / "templates"
    (templates / "llamacpp").mkdir(parents=True)
    (templates / "llamacpp" / "source.Dockerfile.j2").write_text(TEMPLATE.format(cache_id=f"bisect-test-{uuid.uuid4().hex}"))
    workspace = Workspace(REPO / "matrix.yaml")
    job = workspace.job(workspace.cell(CELL))
    job = dataclasses.replace(job, template_roots=(templates, *job.template_roots))
    builder = FullBuilder(docker_client, job, repo, FullBuildSettings(tool=detect_build_tool()),
                          tmp_path / "work", log=print)
    tags: list[str] = []
    try:
        first, second = builder(shas[0]), builder(shas[1])
        tags += [first.tag, second.tag]
        for built, sha, text in ((first, shas[0], "// A\n"), (second, shas[1], "// B\n")):
            assert built.tag.startswith(f"{LOCAL_REPOSITORY}/{CELL}:") and not built.reused
            image = docker_client.images.get(built.digest)
            assert image.labels[COMMIT_LABEL] == sha and image.labels[BISECT_LABEL] == "1"
            out = docker_client.containers.run(built.digest, ["cat", "/opt/tree/tools/server/server.cpp",
                                                              "/opt/provenance.json"], remove=True).decode()
            assert out.startswith(text) and f"git:{repo.path.resolve()}@{sha}" in out
            assert built.log is not None and built.log.is_file()
        assert first.ccache == CcacheStats(hits=0, misses=1)
        assert second.ccache == CcacheStats(hits=1, misses=1)  # the cache mount outlived the first build
        again = builder(shas[0])
        assert again.reused and again.digest == first.digest and again.ccache is None
    finally:
        for tag in tags:
            docker_client.images.remove(tag, force=True)


@pytest.fixture
def empty_registry(registry_bin, tmp_path):
    server = start_registry(registry_bin, tmp_path / "registry")  # its own: nothing of the shared one leaks in
    yield server
    stop_registry(server)


def test_a_missing_model_helper_stops_the_bisect_before_any_build(empty_registry, history, tmp_path):
    """A llama.cpp bisect converts its GGUF smoke model inside the helper cell's image; it was looked up only
    after both endpoints were built (~10 min of compiling for llama.cpp). Now: one line, exit 1, nothing built."""
    repo, shas = history
    cache = tmp_path / "cache"
    argv = [sys.executable, "-m", "builder", "bisect", "--matrix", str(REPO / "matrix.yaml"), "--cell", CELL,
            "--repo", str(repo.path), "--good", shas[0], "--bad", shas[1], "--build-good", "--metric", "golden",
            "--registry", empty_registry.host]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "BUILDER_CACHE": str(cache)})
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "full build" not in done.stderr
    helper = f"{empty_registry.host}/llm-factory/images:{HELPER}"
    assert lines[-1] == (f"error: {CELL}: its smoke model generated:tiny-llama-gguf is made inside {helper} "
                         f"(smoke.model_helper), which is neither in the local Docker Engine nor in "
                         f"{empty_registry.host}: build and promote {HELPER} first (builder build --cell {HELPER} "
                         "--smoke --promote), or give --model-dir DIR holding one .gguf file"), done.stderr
    assert not (cache / "bisect" / "builds").exists()  # no build was started, not even its log


def test_a_model_helper_in_the_registry_or_only_in_the_engine_is_found(empty_registry, docker_client, cpu_base,
                                                                      history, tmp_path):
    repo, shas = history
    workspace = Workspace(REPO / "matrix.yaml")
    job = workspace.job(workspace.cell(CELL))
    helper = f"{empty_registry.host}/llm-factory/images:{HELPER}"
    request = BisectRequest(job=job, repo=repo.path, good=shas[0], bad=shas[1], image=None, helper_image=helper)
    clients = lambda host: empty_registry.client()  # noqa: E731
    with pytest.raises(StepFailed):
        check_model_helper(docker_client, request, clients)
    push_image(empty_registry.client(), "llm-factory/images", HELPER)  # a real manifest; it is never pulled here
    check_model_helper(docker_client, request, clients)
    local = dataclasses.replace(request, helper_image=f"127.0.0.1:1/llm-factory/images:{HELPER}-{uuid.uuid4().hex[:8]}")
    with pytest.raises(StepFailed):  # neither in the Engine nor in the (empty registry's) tags
        check_model_helper(docker_client, local, clients)
    docker_client.images.get(cpu_base).tag(local.helper_image)
    try:
        check_model_helper(docker_client, local, clients)  # in the local Engine: no registry asked
    finally:
        docker_client.images.remove(local.helper_image)

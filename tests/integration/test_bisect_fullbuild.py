"""Tier 4 through the real Docker Engine and BuildKit, in seconds: the llama.cpp cpu cell's job with its
template replaced by a small one (first in the job's template roots) that extracts the source archive and
keeps a build counter in a BuildKit cache mount. What it shows of fullbuild.py: each commit's own tree is in
its image (the archive substituted for the pinned source), the step image is local, labelled with the
commit, and found by its tag on a rerun (nothing built), and the ccache statistics come from BuildKit's log.
The real template's compile is measured by benchmarks/bisect_llamacpp_tier4.py (30-70 min cold here)."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import pytest

from builder.bisect.candidates import GitRepo
from builder.bisect.fullbuild import FullBuilder, FullBuildSettings
from builder.bisect.sourcebuild import BISECT_LABEL, COMMIT_LABEL, LOCAL_REPOSITORY, CcacheStats
from builder.buildkit.tool import detect_build_tool
from builder.jobs.workspace import Workspace
from tests.conftest import REPO
from tests.unit.bisect.lab import commit, git

pytestmark = pytest.mark.integration
CELL = "llama.cpp-b11312-cpu"
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

"""Patch records for llama.cpp judged against the real llama-cpp-python 0.3.36 sdist (76 MB, fetched
once from PyPI, checksum-verified, cached under ~/.cache/llm-factory or BUILDER_CACHE). The factory
ships no llama.cpp record (none is needed: ggml's CMake already maps 12X to 12Xa and keeps 121a), so
these records live in the test: one whose fix is upstream, one that applies, one whose guard fails."""

from __future__ import annotations

import difflib
import json
from pathlib import Path

import pytest

from builder.matrix.load import load_matrix
from builder.patching.report import source_ref_for
from builder.patching.sources import SourceCache
from tests.conftest import REPO, run_builder

pytestmark = pytest.mark.integration
CUDA_CMAKE = "vendor/llama.cpp/ggml/src/ggml-cuda/CMakeLists.txt"


@pytest.fixture(scope="module")
def tree() -> Path:
    cache = SourceCache()
    archive = cache.fetch(source_ref_for(load_matrix(REPO / "matrix.yaml"), "llama.cpp", "b11312"))
    assert archive.sha256 == "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
    return cache.extract(archive)


def _record(root: Path, rid: str, body: str, diff: str | None = None) -> None:
    folder = root / "llama.cpp" / rid
    folder.mkdir(parents=True)
    (folder / "patch.yaml").write_text(f"id: {rid}\nengine: llama.cpp\n{body}")
    if diff is not None:
        (folder / "fix.diff").write_text(diff)


def _diff(tree: Path, relative: str, old: str, new: str) -> str:
    text = (tree / relative).read_text()
    assert old in text
    lines = difflib.unified_diff(text.splitlines(keepends=True), text.replace(old, new, 1).splitlines(keepends=True),
                                 f"a/{relative}", f"b/{relative}")
    return "".join(lines)


def test_shipped_none_and_the_pinned_sdist_verifies(tree):
    assert (tree / "vendor/llama.cpp/tools/server/server.cpp").is_file()  # what the template builds
    done = run_builder("patches", "check", "--engine", "llama.cpp", "--versions", "b11312")
    assert done.returncode == 0, done.stderr
    assert "ships none for llama.cpp" in done.stdout
    assert "sha256 832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e" in done.stderr


def test_verdicts_against_the_vendored_tree(tree, tmp_path):
    common = 'description: d\nupstream: "ggml-org/llama.cpp#0"\napplies_to: ">=11000"\nkind: diff\ndiff: fix.diff\n'
    _record(tmp_path, "llamacpp-arch-rewrite", common + f"archs: [sm_121a]\nupstream_fix:\n  file: {CUDA_CMAKE}\n"
            "  pattern: 'Replacing \\$\\{ARCH\\} in \\$\\{ARCHS\\} with \\$\\{FIXED_ARCH\\}'\n",
            _diff(tree, CUDA_CMAKE, "Replacing", "Rewriting"))
    _record(tmp_path, "llamacpp-server-note", common + "archs: [sm_121a, cpu]\n",
            _diff(tree, "vendor/llama.cpp/tools/server/server.cpp", "#include", "// factory\n#include"))
    _record(tmp_path, "llamacpp-guarded", common + f"archs: [sm_121a]\nrequires:\n  file: {CUDA_CMAKE}\n"
            "  pattern: 'NO_SUCH_OPTION'\n", _diff(tree, CUDA_CMAKE, "Replacing", "Rewriting"))
    _record(tmp_path, "llamacpp-old", common.replace(">=11000", "<11000") + "archs: [sm_121a]\n",
            _diff(tree, CUDA_CMAKE, "Replacing", "Rewriting"))
    done = run_builder("patches", "check", "--engine", "llama.cpp", "--versions", "b11312", "--arch", "sm_121a",
                       "--patches", str(tmp_path), "--json")
    assert done.returncode == 1, done.stderr  # the guarded record is a CONFLICT
    verdicts = {row["patch_id"]: row for row in json.loads(done.stdout)}
    assert {k: v["verdict"] for k, v in verdicts.items()} == {
        "llamacpp-arch-rewrite": "already upstream", "llamacpp-server-note": "applies",
        "llamacpp-guarded": "CONFLICT", "llamacpp-old": "not applicable"}
    assert all(row["version"] == "b11312" for row in verdicts.values())
    assert "11312" in verdicts["llamacpp-old"]["detail"]  # gated on the build number, not the label

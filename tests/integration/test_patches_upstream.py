"""Patch records against the real vLLM sdists from PyPI (downloaded once, checksum-verified,
cached under ~/.cache/llm-factory or BUILDER_CACHE)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from builder.matrix.load import load_matrix
from builder.patching.report import source_ref_for
from builder.patching.sources import SourceCache
from tests.conftest import REPO, run_builder

pytestmark = pytest.mark.integration
VERSIONS = ["0.14.0", "0.16.0", "0.19.1", "0.20.2", "0.33.0"]

# What each shipped record must say for each release (established from the sdists themselves).
EXPECTED = {
    "vllm-gemma4-nvfp4-scales": ["not applicable", "not applicable", "already upstream", "already upstream", "not applicable"],
    "vllm-gemma4-nvfp4-scales-overlay": ["not applicable", "not applicable", "already upstream", "already upstream", "not applicable"],
    "vllm-sm121a-archs-0.14": ["applies", "applies", "already upstream", "not applicable", "not applicable"],
    "vllm-sm121a-archs-0.20": ["not applicable", "not applicable", "not applicable", "applies", "applies"],
    "vllm-triton-ptxas-sm121a": ["applies", "applies", "not applicable", "not applicable", "not applicable"],
}


@pytest.fixture(scope="module")
def trees() -> dict[str, Path]:
    cache = SourceCache()
    matrix = load_matrix(REPO / "matrix.yaml")
    return {v: cache.extract(cache.fetch(source_ref_for(matrix, "vllm", v))) for v in VERSIONS}


def test_patches_check_table_over_five_releases(trees):
    done = run_builder("patches", "check", "--engine", "vllm", "--versions", ",".join(VERSIONS),
                       "--arch", "sm_121a", "--json")
    assert done.returncode == 0, done.stderr
    verdicts = json.loads(done.stdout)
    table = {}
    for row in verdicts:
        table.setdefault(row["patch_id"], []).append(row["verdict"])
        assert row["detail"], f"every verdict is explained: {row}"
    assert table == EXPECTED


def test_text_table_explains_each_verdict(trees):
    done = run_builder("patches", "check", "--versions", "0.16.0,0.33.0", "--arch", "sm_121a")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["patch", "version", "verdict", "why"]
    row = next(line for line in lines if line.startswith("vllm-gemma4-nvfp4-scales ") and "0.16.0" in line)
    assert "outside applies_to" in row  # gemma4.py first appears in 0.19.0


def test_not_applicable_for_an_untargeted_arch(trees):
    done = run_builder("patches", "check", "--versions", "0.16.0", "--arch", "sm_90", "--json")
    assert {row["verdict"] for row in json.loads(done.stdout)} == {"not applicable"}


def test_broken_patch_is_a_conflict_naming_file_and_hunk(trees, tmp_path):
    shutil.copytree(REPO / "tests" / "fixtures" / "broken-patch", tmp_path / "vllm" / "broken")
    done = run_builder("patches", "check", "--versions", "0.19.1", "--patches", str(tmp_path))
    assert done.returncode == 1
    row = next(line for line in done.stdout.splitlines() if line.startswith("broken "))
    assert "CONFLICT" in row and re.search(r"CMakeLists\.txt: hunk @@ -\d+,\d+ \+\d+,\d+ @@ does not apply", row)


def cmake_lists(text: str, name: str) -> list[str]:
    return re.findall(rf'cuda_archs_loose_intersection\({name} "([^"]*)"', text)


def applied(tree: Path, patch_id: str, tmp_path: Path) -> str:
    """Apply a shipped diff to a copy of the sdist tree; return the patched CMakeLists.txt."""
    work = tmp_path / patch_id
    shutil.copytree(tree, work, ignore=shutil.ignore_patterns("csrc", "tests", "docs", "benchmarks"))
    diff = next((REPO / "builder" / "shipped" / "patches" / "vllm" / patch_id).glob("*.diff"))
    subprocess.run(["git", "apply", "-p1", str(diff)], cwd=work, check=True, timeout=60)
    return (work / "CMakeLists.txt").read_text()


def before_lists(tree: Path) -> str:
    return ";".join(re.findall(r'set\(CUDA_SUPPORTED_ARCHS "([^"]*)"\)', (tree / "CMakeLists.txt").read_text()))


def test_arch_patch_014_puts_121a_where_it_promises(trees, tmp_path):
    for version in ("0.14.0", "0.16.0"):
        text = applied(trees[version], "vllm-sm121a-archs-0.14", tmp_path / version)
        supported = re.findall(r'set\(CUDA_SUPPORTED_ARCHS "([^"]*)"\)', text)
        # the two CUDA branches (the third list is the ROCm-less fallback without 12.x)
        assert sum("12.1" in s.split(";") for s in supported) == 2 and "12.1" not in before_lists(trees[version])
        for name in ("SCALED_MM_ARCHS", "FP4_ARCHS"):
            sm120 = [lst for lst in cmake_lists(text, name) if "12.0a" in lst or "12.0f" in lst]
            assert sm120 and all("12.1a" in lst.split(";") for lst in sm120), (version, name, sm120)
        assert all("12.1a" in lst.split(";") for lst in cmake_lists(text, "CUTLASS_MOE_DATA_ARCHS")
                   if "12.0" in lst)


def test_arch_patch_020_restores_121_for_cuda13(trees, tmp_path):
    for version in ("0.20.2", "0.33.0"):
        before = (trees[version] / "CMakeLists.txt").read_text()
        after = applied(trees[version], "vllm-sm121a-archs-0.20", tmp_path / version)
        count = lambda text: sum("12.1" in s.split(";") for s in re.findall(r'set\(CUDA_SUPPORTED_ARCHS "([^"]*)"\)', text))
        assert count(after) == count(before) + 1


def test_checksum_mismatch_is_an_error(tmp_path):
    from builder.errors import StepFailed
    from builder.matrix.model import SourceRef
    cache = SourceCache(tmp_path / "cache")
    with pytest.raises(StepFailed, match="checksum mismatch"):
        cache.fetch(SourceRef("pypi", name="vllm", version="0.14.0", sha256="0" * 64))


def test_a_conflicting_patch_stops_the_build_before_anything_is_built(plain_registry, tmp_path):
    """The check runs inside `builder build`: the cell stops with the file and hunk, nothing pushed."""
    shutil.copytree(REPO / "builder" / "shipped" / "patches", tmp_path / "patches")
    shutil.copytree(REPO / "tests" / "fixtures" / "broken-patch", tmp_path / "patches" / "vllm" / "broken")
    shutil.copy(REPO / "matrix.yaml", tmp_path / "matrix.yaml")
    done = run_builder("build", "--matrix", str(tmp_path / "matrix.yaml"), "--cell", "vllm-0.19.1-cu129-sm_121a",
                       "--registry", plain_registry.host, "--workdir", str(tmp_path / "work"))
    assert done.returncode == 1
    assert re.search(r"patch broken CONFLICT: CMakeLists\.txt: hunk @@ .* @@ does not apply; nothing was built or pushed",
                     done.stderr), done.stderr
    assert not (tmp_path / "work" / "contexts").exists()
    from builder.oci.registry import RegistryClient
    tags = RegistryClient(plain_registry.host).tags("llm-factory/images")
    assert not [t for t in tags if t.startswith("vllm-0.19.1-cu129-sm_121a")]


def test_a_local_path_source_is_packed_reproducibly(tmp_path):
    from builder.matrix.model import SourceRef
    tree = tmp_path / "src"
    (tree / "cmake").mkdir(parents=True)
    (tree / "CMakeLists.txt").write_text("project(x)\n")
    (tree / "cmake" / "utils.cmake").write_text("# utils\n")
    cache = SourceCache(tmp_path / "cache")
    first = cache.fetch(SourceRef("path", path=str(tree)))
    (tree / "CMakeLists.txt").touch()  # a new mtime, same content: same archive
    second = cache.fetch(SourceRef("path", path=str(tree)))
    assert first.sha256 == second.sha256
    assert (cache.extract(second) / "CMakeLists.txt").read_text() == "project(x)\n"

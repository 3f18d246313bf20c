from __future__ import annotations

import pytest

from builder.bisect.classify import ClassifyRules, classify, glob_regex, parse_pr
from builder.bisect.model import FileChange


@pytest.mark.parametrize("subject, pr", [
    ("[Perf] Reorder the step loop (#38152)", 38152),
    ("Fix gemma4 scale suffixes (#38912)  ", 38912),
    ("Merge pull request #123 from someone/branch", 123),
    ("Revert \"x (#12)\" (#13)", 13),
    ("Mention #38152 in the docs", None),
    ("Bump to 0.20.2 (#38152) follow-up", None),
    ("", None),
])
def test_parse_pr(subject: str, pr: int | None) -> None:
    assert parse_pr(subject) == pr


@pytest.mark.parametrize("pattern, path, hit", [
    ("*.cu", "csrc/moe/topk.cu", True),
    ("*.cu", "csrc/moe/topk.cuh", False),
    ("csrc/**", "csrc/a/b/c.py", True),
    ("csrc/**", "vllm/csrc/x.py", False),
    ("CMakeLists.txt", "csrc/CMakeLists.txt", True),
    ("cmake/**", "cmake/utils.cmake", True),
    ("requirements*.txt", "requirements-cuda.txt", True),
    ("vllm/**/*.py", "vllm/engine.py", True),
    ("vllm/*.py", "vllm/v1/engine.py", False),
    ("docs/", "docs/a/b.md", True),
])
def test_glob(pattern: str, path: str, hit: bool) -> None:
    assert bool(glob_regex(pattern).match(path)) is hit


def _changes(*paths: str) -> list[FileChange]:
    return [FileChange(path=p, status="M") for p in paths]


def test_python_only_under_package_and_ignored_files() -> None:
    got = classify(_changes("vllm/v1/worker/gpu_model_runner.py", "vllm/chat_template.jinja",
                            "docs/usage.md", "tests/test_x.py", "README.md"), ClassifyRules(package_dir="vllm"))
    assert got.kind == "python-only" and got.reason == ""
    assert [c.path for c in got.overlay] == ["vllm/v1/worker/gpu_model_runner.py", "vllm/chat_template.jinja"]


@pytest.mark.parametrize("path, rule", [
    ("csrc/attention/paged.cu", "csrc/**"),
    ("vllm/_custom_ops.cpp", "*.cpp"),
    ("vllm/kernels/x.h", "*.h"),
    ("CMakeLists.txt", "CMakeLists.txt"),
    ("setup.py", "setup.py"),
    ("requirements/cuda.txt", "requirements/**"),
])
def test_compiled_changes_need_a_build(path: str, rule: str) -> None:
    got = classify(_changes("vllm/engine.py", path), ClassifyRules(package_dir="vllm"))
    assert got.kind == "needs-build" and got.reason == f"{path} matches {rule}" and got.overlay == ()


def test_a_file_outside_the_package_needs_a_build() -> None:
    got = classify(_changes("tools/install.sh"), ClassifyRules(package_dir="vllm"))
    assert got.kind == "needs-build" and "outside vllm/" in got.reason


def test_rules_are_configurable() -> None:
    rules = ClassifyRules(package_dir="sglang/python/sglang", compiled=("sgl-kernel/**",), ignored=())
    assert classify(_changes("sglang/python/sglang/srt/x.py"), rules).kind == "python-only"
    assert classify(_changes("sgl-kernel/csrc/x.cu"), rules).kind == "needs-build"
    assert classify(_changes("vllm/x.cu"), ClassifyRules(package_dir="vllm", compiled=())).kind == "python-only"
    assert classify(_changes("docs/x.md"), rules).kind == "needs-build"  # nothing ignored

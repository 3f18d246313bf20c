"""Patch records: metadata validation, planning per cell, and verdicts on small real trees
(git apply runs for real; the integration tests use the real vLLM sdists)."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest
from packaging.version import Version

from builder.errors import ConfigError
from builder.patching.check import (
    APPLIES,
    CONFLICT,
    NOT_APPLICABLE,
    UPSTREAM,
    check_record,
)
from builder.patching.records import load_patch, load_patches

ORIGINAL = "".join(f"line {n}\n" for n in range(1, 21))
DIFF = textwrap.dedent("""\
    --- a/CMakeLists.txt
    +++ b/CMakeLists.txt
    @@ -9,3 +9,3 @@
     line 9
    -line 10
    +line 10 with 12.1a
     line 11
    """)


def make_record(root: Path, pid: str = "demo", **overrides) -> Path:
    folder = root / "vllm" / pid
    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        "id": pid, "engine": "vllm", "description": "demo patch", "upstream": "vllm-project/vllm#1",
        "applies_to": '">=0.14,<0.21"', "archs": "[sm_121a]", "kind": "diff", "diff": "demo.diff",
    }
    meta.update(overrides)
    lines = [f"{k}: {v}" for k, v in meta.items() if v is not None]
    (folder / "patch.yaml").write_text("\n".join(lines) + "\n")
    (folder / "demo.diff").write_text(DIFF)
    return folder / "patch.yaml"


def tree_with(tmp_path: Path, text: str) -> Path:
    tree = tmp_path / "src"
    tree.mkdir(exist_ok=True)
    (tree / "CMakeLists.txt").write_text(text)
    return tree


@pytest.mark.parametrize("overrides,message", [
    ({"applies_to": None}, "missing the required key 'applies_to'"),
    ({"applies_to": '"=>0.14"'}, "not a valid version specifier"),
    ({"kind": "sed"}, "unknown patch kind 'sed'"),
    ({"archs": "sm_121a", "arch": "[sm_121a]"}, "unknown key 'arch'"),
    ({"id": "other"}, "must match its directory name"),
    ({"diff": "missing.diff"}, "not found next to patch.yaml"),
    ({"upstream_fix": "{file: CMakeLists.txt, pattern: '12.1a('}"}, "not a valid regex"),
])
def test_malformed_metadata_names_the_patch_file(tmp_path, overrides, message):
    path = make_record(tmp_path, **overrides)
    with pytest.raises(ConfigError) as info:
        load_patch(path)
    assert str(info.value).startswith(str(path))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_load_patches_sorted_and_filtered_by_engine(tmp_path):
    make_record(tmp_path, "b-patch")
    make_record(tmp_path, "a-patch")
    assert [r.id for r in load_patches(tmp_path)] == ["a-patch", "b-patch"]
    assert load_patches(tmp_path, engine="sglang") == []


def verdict(tmp_path, tree, version="0.19.1", arch="sm_121a", **overrides):
    record = load_patch(make_record(tmp_path, **overrides))
    return check_record(record, tree, Version(version), arch, None, None)


def test_applies(tmp_path):
    result = verdict(tmp_path, tree_with(tmp_path, ORIGINAL))
    assert (result.verdict, result.detail) == (APPLIES, "CMakeLists.txt")


def test_already_upstream_by_reverse_apply(tmp_path):
    tree = tree_with(tmp_path, ORIGINAL.replace("line 10\n", "line 10 with 12.1a\n"))
    assert verdict(tmp_path, tree).verdict == UPSTREAM


def test_already_upstream_by_shape_pattern(tmp_path):
    tree = tree_with(tmp_path, ORIGINAL.replace("line 10\n", "line 10 12.1f\n"))
    result = verdict(tmp_path, tree, upstream_fix="{file: CMakeLists.txt, pattern: '12\\.1f'}")
    assert result.verdict == UPSTREAM and "already has the fix" in result.detail


def test_conflict_names_file_and_hunk(tmp_path):
    tree = tree_with(tmp_path, ORIGINAL.replace("line 10\n", "line ten\n"))
    result = verdict(tmp_path, tree)
    assert result.verdict == CONFLICT
    assert result.detail == "CMakeLists.txt: hunk @@ -9,3 +9,3 @@ does not apply"


def test_unknown_source_shape_is_a_conflict(tmp_path):
    result = verdict(tmp_path, tree_with(tmp_path, ORIGINAL),
                     requires="{file: CMakeLists.txt, pattern: 'CUDA_SUPPORTED_ARCHS'}")
    assert result.verdict == CONFLICT and "unknown source shape" in result.detail


@pytest.mark.parametrize("version,arch,expected", [
    ("0.11.0", "sm_121a", "outside applies_to"),
    ("0.19.1", "sm_90", "arch sm_90 not targeted"),
])
def test_not_applicable_out_of_range_or_arch(tmp_path, version, arch, expected):
    result = verdict(tmp_path, tree_with(tmp_path, ORIGINAL), version=version, arch=arch)
    assert result.verdict == NOT_APPLICABLE and expected in result.detail


def test_a_target_absent_in_range_is_a_conflict(tmp_path):
    # the file was renamed or removed upstream: skipping the patch would ship the bug without a word
    tree = tmp_path / "empty"
    tree.mkdir()
    result = verdict(tmp_path, tree)
    assert result.verdict == CONFLICT and "does not exist" in result.detail and "renamed or removed" in result.detail


def test_a_renamed_target_stops_the_cell(tmp_path):
    tree = tree_with(tmp_path, ORIGINAL)
    for path in list(tree.rglob("*")):
        if path.is_file() and path.name == "CMakeLists.txt":
            path.rename(path.with_name("CMakeLists.cmake"))  # upstream renamed the file the diff targets
    result = verdict(tmp_path, tree)
    assert result.verdict == CONFLICT, result


def overlay_record(tmp_path, derived_from: str):
    folder = tmp_path / "vllm" / "gemma-overlay"
    folder.mkdir(parents=True)
    (folder / "gemma4.py").write_text("fixed = True\n")
    (folder / "patch.yaml").write_text(textwrap.dedent(f"""\
        id: gemma-overlay
        engine: vllm
        description: overlay demo
        upstream: vllm-project/vllm#38912
        applies_to: ">=0.18,<0.19.1"
        archs: [sm_121a]
        kind: overlay
        target: vllm/models/gemma4.py
        file: gemma4.py
        derived_from_sha256: {derived_from}
        """))
    return load_patch(folder / "patch.yaml")


def test_overlay_refuses_a_changed_upstream_file(tmp_path):
    original = "fixed = False\n"
    tree = tmp_path / "src" / "vllm" / "models"
    tree.mkdir(parents=True)
    (tree / "gemma4.py").write_text(original)
    good = overlay_record(tmp_path / "a", hashlib.sha256(original.encode()).hexdigest())
    assert check_record(good, tmp_path / "src", Version("0.18.1"), "sm_121a", "wheel", None).verdict == APPLIES
    (tree / "gemma4.py").write_text("fixed = False  # upstream moved on\n")
    result = check_record(good, tmp_path / "src", Version("0.18.1"), "sm_121a", "wheel", None)
    assert result.verdict == CONFLICT and "differs from the file the overlay was derived from" in result.detail


def test_env_patch_gated_on_triton(tmp_path):
    folder = tmp_path / "vllm" / "ptxas"
    folder.mkdir(parents=True)
    (folder / "patch.yaml").write_text(textwrap.dedent("""\
        id: ptxas
        engine: vllm
        description: ptxas demo
        upstream: triton-lang/triton#8539
        applies_to: ">=0.10"
        archs: [sm_121a]
        kind: env
        env: {TRITON_PTXAS_PATH: /usr/local/cuda/bin/ptxas}
        when_triton: "<3.6"
        """))
    record = load_patch(folder / "patch.yaml")
    assert check_record(record, None, Version("0.16.0"), "sm_121a", "source", "3.5.1").verdict == APPLIES
    assert check_record(record, None, Version("0.20.2"), "sm_121a", "source", "3.6.0").verdict == NOT_APPLICABLE


def test_a_record_in_another_engines_directory_is_refused_at_its_engine_line(tmp_path):
    from builder.errors import ConfigError
    from builder.patching.records import load_patches
    record = tmp_path / "patches" / "llama.cpp" / "x"
    record.mkdir(parents=True)
    (record / "patch.yaml").write_text('id: x\nengine: vllm\ndescription: d\nupstream: none\napplies_to: ">=0.1"\n'
                                       'archs: [cpu]\nkind: env\nenv: {A: "1"}\n')
    with pytest.raises(ConfigError) as caught:
        load_patches(tmp_path / "patches")
    assert str(caught.value) == (f"{record / 'patch.yaml'}:2: engine 'vllm' does not match the directory 'llama.cpp': "
                                 "keep the record under patches/vllm/")

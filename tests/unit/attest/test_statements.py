"""The provenance predicate names the source, the base digest and the patches with their verdicts."""

from __future__ import annotations

from builder.attest.statements import provenance_predicate, source_of, statement, subject_digest

RECORD = {
    "cell": "vllm-0.20.2-cu130-sm_121a", "engine": "vllm", "engine_version": "0.20.2", "arch": "sm_121a",
    "base_image": "nvidia/cuda:13.0.2-devel-ubuntu24.04", "base_digest": "sha256:" + "cc" * 32,
    "source": {"ref": "pypi-sdist:vllm==0.20.2", "sha256": "dd" * 32, "commit": None},
    "patches_applied": [{"id": "sm121-archs", "kind": "diff", "sha256": "ee" * 32, "upstream": "vllm#39878"}],
    "patches_skipped": [{"id": "gemma4-nvfp4", "verdict": "already-upstream", "reason": "mapping present"}],
}


def test_provenance_names_what_the_image_was_built_from():
    labels = {"org.opencontainers.image.revision": "abc123", "org.llmfactory.content-hash": "f" * 64}
    predicate = provenance_predicate(image_record=RECORD, labels=labels, factory_version="0.1.0", runner={"host": "h"})
    assert source_of(predicate) == {"name": "source", "uri": "pypi-sdist:vllm==0.20.2", "digest": {"sha256": "dd" * 32}}
    deps = predicate["buildDefinition"]["resolvedDependencies"]
    assert {"name": "base-image", "uri": RECORD["base_image"], "digest": {"sha256": "cc" * 32}} in deps
    assert deps[-1]["name"] == "patch:sm121-archs" and deps[-1]["annotations"]["verdict"] == "applied"
    assert predicate["runDetails"]["builder"]["version"] == {"llm-image-factory": "0.1.0", "commit": "abc123"}
    assert predicate["runDetails"]["byproducts"][0]["annotations"]["verdict"] == "already-upstream"
    assert predicate["buildDefinition"]["externalParameters"]["cell"] == RECORD["cell"]


def test_statement_subject_is_the_digest():
    digest = "sha256:" + "ab" * 32
    made = statement("sbom", "r/x", digest, {})
    assert made["predicateType"] == "https://spdx.dev/Document" and subject_digest(made) == digest
    assert subject_digest({"subject": []}) is None and subject_digest({"subject": [{"digest": "x"}]}) is None


def test_the_provenance_names_the_files_each_shipped_patch_changes():
    from pathlib import Path

    import builder.shipped
    from builder.attest.statements import changed_files
    from builder.patching.records import load_patches

    root = Path(builder.shipped.__file__).parent / "patches"
    files = {r.id: changed_files(r.kind, r.content, r.target) for r in load_patches(root, "vllm")}
    assert files["vllm-sm121a-archs-0.20"] == ("CMakeLists.txt",)
    assert files["vllm-gemma4-nvfp4-scales-overlay"] == ("vllm/model_executor/models/gemma4.py",)
    assert files["vllm-gemma4-nvfp4-scales"] == ("vllm/model_executor/models/gemma4.py",)
    record = {**RECORD, "patches_applied": [{"id": "vllm-sm121a-archs-0.20", "kind": "diff", "sha256": "ee" * 32}]}
    predicate = provenance_predicate(image_record=record, labels={}, factory_version="x", runner={},
                                     patch_files=files)
    patch = predicate["buildDefinition"]["resolvedDependencies"][-1]
    assert patch["annotations"]["files"] == ["CMakeLists.txt"]

"""The three in-toto statements an image carries (pure): its SBOM, its SLSA provenance, its smoke verdict.

Each names the image as its subject: `<registry>/<repository>` and the manifest's sha256. The
provenance follows SLSA provenance v1 (buildDefinition: what was built from what; runDetails: who
built it); the smoke verdict's predicate is the stored smoke report plus the runner and the GPU.

>>> subject("127.0.0.1:5000/llm-factory/images", "sha256:" + "ab" * 32)[0]["digest"]["sha256"][:8]
'abababab'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from builder.attest.envelope import STATEMENT_TYPE
from builder.attest.sbom import SPDX_PREDICATE

SLSA_PREDICATE = "https://slsa.dev/provenance/v1"
SMOKE_PREDICATE = "urn:llm-image-factory:smoke-verdict:v1"
BUILD_TYPE = "urn:llm-image-factory:cell-build:v1"
BUILDER_ID = "urn:llm-image-factory:builder"

AttestationKind = Literal["sbom", "provenance", "smoke"]
PREDICATES: dict[AttestationKind, str] = {"sbom": SPDX_PREDICATE, "provenance": SLSA_PREDICATE,
                                          "smoke": SMOKE_PREDICATE}


def subject(name: str, digest: str) -> list[dict[str, Any]]:
    return [{"name": name, "digest": {"sha256": digest.split(":", 1)[1]}}]


def statement(kind: AttestationKind, name: str, digest: str, predicate: dict[str, Any]) -> dict[str, Any]:
    return {"_type": STATEMENT_TYPE, "subject": subject(name, digest), "predicateType": PREDICATES[kind],
            "predicate": predicate}


def subject_digest(statement_: dict[str, Any]) -> str | None:
    """The sha256 digest the statement is about (its first subject), as `sha256:<hex>`."""
    subjects = statement_.get("subject") or []
    first = subjects[0] if subjects and isinstance(subjects[0], dict) else {}
    value = (first.get("digest") or {}).get("sha256") if isinstance(first.get("digest"), dict) else None
    return f"sha256:{value}" if isinstance(value, str) else None


def source_of(provenance: dict[str, Any]) -> dict[str, Any]:
    """The engine source a provenance predicate names (its resolvedDependencies entry 'source')."""
    deps = (provenance.get("buildDefinition") or {}).get("resolvedDependencies") or []
    return next((d for d in deps if isinstance(d, dict) and d.get("name") == "source"), {})


def changed_files(kind: str, content: bytes, target: str | None) -> tuple[str, ...]:
    r"""The files a patch record changes, relative to the source root (diffs) or the package tree (overlays).

    >>> changed_files("diff", b"--- a/CMakeLists.txt\n+++ b/CMakeLists.txt\n@@ -1 +1 @@\n", None)
    ('CMakeLists.txt',)
    >>> changed_files("overlay", b"", "vllm/model_executor/models/gemma4.py")
    ('vllm/model_executor/models/gemma4.py',)
    """
    if kind == "overlay":
        return (target,) if target else ()
    if kind != "diff":
        return ()
    found = []
    for line in content.splitlines():
        if line.startswith(b"+++ "):
            path = line[4:].split(b"\t", 1)[0].strip().decode("utf-8", "replace")
            if path != "/dev/null":
                found.append(path[2:] if path.startswith("b/") else path)
    return tuple(dict.fromkeys(found))


def provenance_predicate(*, image_record: dict[str, Any] | None, labels: dict[str, str], factory_version: str,
                         runner: dict[str, str], patch_files: Mapping[str, tuple[str, ...]] | None = None
                         ) -> dict[str, Any]:
    """SLSA v1 provenance from the image's provenance.json (the render's record) and its labels;
    patch_files: the files each applied patch changes (from the cell's patch records), by patch id."""
    record = image_record or {}
    source = record.get("source") or {}
    deps: list[dict[str, Any]] = [{
        "name": "source", "uri": source.get("ref") or labels.get("org.opencontainers.image.source", ""),
        **({"digest": {"sha256": source["sha256"]}} if source.get("sha256") else {}),
        **({"annotations": {"commit": source["commit"]}} if source.get("commit") else {}),
    }]
    base_digest = record.get("base_digest") or labels.get("org.opencontainers.image.base.digest", "")
    if base_digest:
        deps.append({"name": "base-image", "uri": record.get("base_image") or "",
                     "digest": {"sha256": str(base_digest).split(":", 1)[-1]}})
    for patch in record.get("patches_applied") or []:
        files = (patch_files or {}).get(str(patch.get("id")))
        deps.append({"name": f"patch:{patch.get('id')}", "digest": {"sha256": patch.get("sha256")},
                     "annotations": {"kind": patch.get("kind"), "upstream": patch.get("upstream"),
                                     "verdict": "applied", **({"files": list(files)} if files else {})}})
    parameters = {k: record.get(k) for k in ("cell", "engine", "engine_version", "arch", "platform", "cuda", "mode",
                                              "torch", "triton") if k in record}
    return {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": parameters or {"cell": labels.get("org.llmfactory.cell", "")},
            "internalParameters": {"content_hash": labels.get("org.llmfactory.content-hash", ""),
                                   "patches_checked_against_source": record.get("patches_checked_against_source")},
            "resolvedDependencies": deps,
        },
        "runDetails": {
            "builder": {"id": BUILDER_ID, "version": {"llm-image-factory": factory_version,
                                                      "commit": labels.get("org.opencontainers.image.revision", "")}},
            "metadata": {"startedOn": labels.get("org.opencontainers.image.created", "")},
            "byproducts": [{"name": f"patch-skipped:{s.get('id')}", "annotations": {
                "verdict": s.get("verdict"), "reason": s.get("reason")}} for s in record.get("patches_skipped") or []],
            "runner": runner,
        },
    }


def smoke_predicate(report: dict[str, Any], *, gpu: str, runner: dict[str, str]) -> dict[str, Any]:
    """The smoke report (checks with evidence, sweep, gate with its known-good digest, audit) and where it ran."""
    return {**report, "gpu": gpu, "runner": runner}

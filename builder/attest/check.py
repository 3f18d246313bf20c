"""`builder verify`'s work: resolve the image to its digest, fetch and check its attestations, compare
the provenance with the matrix, summarise the SBOM. Side effects: registry reads only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from securesystemslib.signer import Key

from builder.attest import envelope
from builder.attest.attach import fetch
from builder.attest.envelope import EnvelopeVerdict
from builder.attest.sbom import SbomSummary, summarize
from builder.attest.statements import source_of
from builder.attest.verify import Checked, ExpectedSource, Verdict, decide
from builder.errors import BuilderError, StepFailed
from builder.oci.reference import ImageRef
from builder.oci.registry import RegistryClient

# the cell a verified provenance names -> what the matrix pins for it (None: the cell is not in the matrix)
SourceLookup = Callable[[str], "ExpectedSource | None"]


class VerifyRefused(BuilderError):
    """builder verify refused the image; the exit code says why (see attest/verify.py)."""

    def __init__(self, verdict: Verdict):
        self.exit_code = verdict.exit_code
        super().__init__(f"{verdict.status}: {verdict.reason}")


@dataclass(frozen=True, kw_only=True)
class Verified:
    image: str  # registry/repository@digest
    digest: str
    verdict: Verdict
    checked: tuple[Checked, ...]
    sbom: SbomSummary | None
    engine: str

    def lines(self) -> list[str]:
        statements = self.verdict.statements
        smoke = statements["smoke"]["predicate"]
        provenance = statements["provenance"]["predicate"]
        source = source_of(provenance)
        sha = (source.get("digest") or {}).get("sha256")
        checks = ", ".join(f"{c.get('name')} {c.get('status')}" for c in smoke.get("checks") or [])
        builder = provenance.get("runDetails", {}).get("builder", {}).get("version", {})
        out = [f"image:      {self.image}",
               f"signatures: {len(self.checked)} attestation(s) verified ("
               f"{', '.join(sorted({c.kind or '?' for c in self.checked}))})",
               f"smoke:      passed {smoke.get('finished_at', '')} on {smoke.get('gpu', '?')}: {checks}",
               f"source:     {source.get('uri', '')}{f' sha256 {sha[:16]}' if sha else ''}",
               f"factory:    {builder.get('llm-image-factory', '?')} commit {builder.get('commit') or '?'}"]
        if self.sbom is not None:
            out += self.sbom.lines(self.engine)
        return out + [f"verified:   {self.verdict.reason}"]


def engine_package(provenance: dict) -> str | None:
    """The engine's PyPI package when the provenance names a wheel source (`pypi:NAME==VERSION`)."""
    found = re.fullmatch(r"pypi:([A-Za-z0-9._-]+)==\S+", str(source_of(provenance).get("uri") or ""))
    return found.group(1) if found else None


def verify_image(client: RegistryClient, ref: ImageRef, key: Key, expected: SourceLookup | None) -> Verified:
    """Verify ref against key; raises VerifyRefused (exit 4-8) when the image does not pass."""
    info = client.head_manifest(ref.repository, ref.ref)
    if info is None:
        raise StepFailed(f"{ref} is not in the registry")
    digest = info.digest
    checked = [Checked(kind=a.kind, artifact=a.artifact,
                       verdict=EnvelopeVerdict(status="tampered", reason=a.problem) if a.problem
                       else envelope.check(a.data, key))
               for a in fetch(client, ref.repository, digest)]
    verdict = decide(digest, checked, None)
    if verdict.status == "verified" and expected is not None:
        params = verdict.statements["provenance"]["predicate"].get("buildDefinition", {}).get("externalParameters", {})
        cell = str(params.get("cell") or "")
        pinned = expected(cell)
        if pinned is None:
            verdict = Verdict(status="source-mismatch", reason=f"the provenance's cell '{cell[:80]}' is not in the matrix",
                              statements=verdict.statements)
        else:
            verdict = decide(digest, checked, pinned)
    if verdict.status != "verified":
        raise VerifyRefused(verdict)
    provenance = verdict.statements["provenance"]["predicate"]
    sbom = verdict.statements.get("sbom", {}).get("predicate")
    params = provenance.get("buildDefinition", {}).get("externalParameters", {})
    engine = f"{params.get('engine', '?')}"
    summary = summarize(sbom, engine_package=engine_package(provenance)) if isinstance(sbom, dict) else None
    return Verified(image=f"{ref.registry}/{ref.repository}@{digest}", digest=digest, verdict=verdict,
                    checked=tuple(checked), sbom=summary, engine=engine)


def as_json(result: Verified) -> str:
    return json.dumps({"image": result.image, "digest": result.digest, "status": result.verdict.status,
                       "attestations": [{"kind": c.kind, "artifact": c.artifact, "status": c.verdict.status}
                                        for c in result.checked],
                       "sbom": result.sbom.to_dict() if result.sbom else None,
                       "source": source_of(result.verdict.statements["provenance"]["predicate"])}, indent=2)

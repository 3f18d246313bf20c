"""The verdict of `builder verify` on one image digest, from its attestations' envelope verdicts (pure).

Every attestation attached to the digest must verify: one that does not (edited, signed by another
key, about another digest) refuses the image even when a good one sits beside it, since a user
should hear that someone wrote there. Then the image needs a signed SBOM and provenance, a signed
smoke verdict that passed, and provenance naming the source the matrix pins. Exit codes, most
serious first: 5 tampered, 7 wrong key, 4 unsigned (or not attested), 6 smoke not passed, 8 built
from another source than the matrix pins; 0 verified.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from builder.attest.envelope import EnvelopeVerdict
from builder.attest.statements import AttestationKind, source_of, subject_digest

VerifyStatus = Literal["verified", "tampered", "wrong-key", "unsigned", "smoke-failed", "source-mismatch"]
EXIT_CODES: dict[VerifyStatus, int] = {"verified": 0, "unsigned": 4, "tampered": 5, "smoke-failed": 6,
                                       "wrong-key": 7, "source-mismatch": 8}
_SEVERITY: tuple[VerifyStatus, ...] = ("tampered", "wrong-key", "unsigned")


@dataclass(frozen=True, kw_only=True)
class Checked:
    """One attached attestation as verify saw it."""

    kind: AttestationKind | None
    artifact: str
    verdict: EnvelopeVerdict


@dataclass(frozen=True, kw_only=True)
class ExpectedSource:
    """What the matrix pins for the image's cell: the source reference and, for sdists, its sha256."""

    uri: str
    sha256: str | None = None


@dataclass(frozen=True, kw_only=True)
class Verdict:
    status: VerifyStatus
    reason: str
    statements: dict[str, dict[str, Any]]  # kind -> the verified statement

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]


def decide(digest: str, checked: list[Checked], expected: ExpectedSource | None) -> Verdict:
    if not checked:
        return Verdict(status="unsigned", reason=f"{digest} carries no attestation", statements={})
    for status in _SEVERITY:  # the most serious problem of any attestation decides
        bad = next((c for c in checked if c.verdict.status == status), None)
        if bad is not None:
            return Verdict(status=status, reason=f"{bad.kind or 'attestation'} {bad.artifact[:19]}: "
                                                 f"{bad.verdict.reason}", statements={})
    statements: dict[str, dict[str, Any]] = {}
    smoke_passed: list[dict[str, Any]] = []
    for item in checked:
        statement = item.verdict.statement or {}
        about = subject_digest(statement)
        if about != digest:
            return Verdict(status="tampered", reason=f"{item.kind or 'attestation'} {item.artifact[:19]} is signed "
                                                     f"for {about}, not {digest}", statements={})
        if item.kind is None:
            continue
        if item.kind == "smoke" and statement["predicate"].get("passed") is True:
            smoke_passed.append(statement)
        statements.setdefault(item.kind, statement)
    missing = [k for k in ("sbom", "provenance") if k not in statements]
    if missing:
        return Verdict(status="unsigned", reason=f"{digest} has no signed {' or '.join(missing)}",
                       statements=statements)
    if not smoke_passed:
        what = "a smoke verdict that failed" if "smoke" in statements else "no smoke verdict"
        return Verdict(status="smoke-failed", reason=f"{digest} has {what}", statements=statements)
    statements["smoke"] = smoke_passed[-1]
    if expected is not None:
        source = source_of(statements["provenance"]["predicate"])
        named = str(source.get("uri") or "")
        sha = (source.get("digest") or {}).get("sha256") if isinstance(source.get("digest"), dict) else None
        if named != expected.uri or (expected.sha256 and sha != expected.sha256):
            return Verdict(status="source-mismatch",
                           reason=f"provenance names source {named or '(none)'}"
                                  f"{f' sha256 {sha[:12]}' if sha else ''}, the matrix pins {expected.uri}"
                                  f"{f' sha256 {expected.sha256[:12]}' if expected.sha256 else ''}",
                           statements=statements)
    return Verdict(status="verified", reason=f"{digest}: SBOM, provenance and a passing smoke verdict, all signed",
                   statements=statements)

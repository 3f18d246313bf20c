"""Making, signing and attaching an image's three attestations (side effects: syft, the registry).

`Attestor.ensure` is what promotion calls before it moves a friendly tag: it reads which signed
attestations the digest already carries, makes the missing ones (SBOM with syft, provenance from
the image's provenance.json and labels, the smoke verdict from the passing report) and attaches
each as an OCI artifact whose subject is the image. Any failure raises: nothing is promoted.
"""

from __future__ import annotations

import platform
from importlib import metadata
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from securesystemslib.signer import CryptoSigner

from builder.attest import envelope, keys, syft
from builder.attest.envelope import ENVELOPE_TYPE
from builder.attest.imagefile import read_provenance
from builder.attest.statements import (
    PREDICATES,
    AttestationKind,
    changed_files,
    provenance_predicate,
    smoke_predicate,
    statement,
    subject_digest,
)
from builder.errors import StepFailed
from builder.matrix.cells import Cell
from builder.patching.records import PatchRecord
from builder.oci.referrers import Referrer, artifact_payload, attach, list_referrers
from builder.oci.registry import RegistryClient
from builder.proof.report import SmokeReport
from builder.util import utc_now

PREDICATE_ANNOTATION = "in-toto.io/predicate-type"  # what BuildKit and oras users filter attestations by
PROVENANCE_FILE = "/opt/llm-factory/provenance.json"  # render/context.py's PROVENANCE_PATH
KINDS: tuple[AttestationKind, ...] = ("sbom", "provenance", "smoke")


def factory_version() -> str:
    try:
        return metadata.version("llm-image-factory")
    except metadata.PackageNotFoundError:  # run from a clone that was never installed
        return "unknown"


def runner() -> dict[str, str]:
    return {"host": platform.node(), "machine": platform.machine(), "os": platform.system(),
            "python": platform.python_version(), "llm-image-factory": factory_version()}


@dataclass(frozen=True, kw_only=True)
class Attestation:
    """One attached attestation: its kind, the artifact digest, and the envelope bytes."""

    kind: AttestationKind | None  # None: a predicate type this factory does not write
    artifact: str
    data: bytes
    problem: str = ""  # the artifact could not be read as one (missing blob, wrong digest, not one layer)


@dataclass(frozen=True, kw_only=True)
class AttestResult:
    attached: dict[str, str]  # kind -> artifact digest, made by this run
    kept: tuple[str, ...]  # kinds the digest already carried, signed by this key
    seconds: dict[str, float] = field(default_factory=dict)  # sbom, sign

    @property
    def message(self) -> str:
        made = ", ".join(f"{k} {d[:19]}" for k, d in self.attached.items()) or "none new"
        took = ", ".join(f"{k} {s:.3g} s" for k, s in self.seconds.items() if k in ("sbom", "sign"))
        return (f"signed attestations: {made}" + (f"; kept {', '.join(self.kept)}" if self.kept else "")
                + (f" ({took})" if took and self.attached else ""))


def kind_of(referrer: Referrer) -> AttestationKind | None:
    predicate = referrer.annotations.get(PREDICATE_ANNOTATION)
    return next((k for k, p in PREDICATES.items() if p == predicate), None)


def fetch(client: RegistryClient, repository: str, digest: str) -> list[Attestation]:
    """Every DSSE attestation attached to digest, with its envelope bytes. An artifact the registry
    lists but cannot serve intact comes back with its problem (verify calls that tampered)."""
    found = []
    for ref in list_referrers(client, repository, digest, ENVELOPE_TYPE):
        try:
            _, data = artifact_payload(client, repository, ref.digest)
        except StepFailed as exc:  # RegistryNotFound, a digest mismatch, a malformed manifest
            found.append(Attestation(kind=kind_of(ref), artifact=ref.digest, data=b"", problem=str(exc)))
            continue
        found.append(Attestation(kind=kind_of(ref), artifact=ref.digest, data=data))
    return found


@dataclass(frozen=True, kw_only=True)
class Attestor:
    """How one promotion attests: the signing key, the GPU the smoke ran on, the engine's package."""

    signer: CryptoSigner
    gpu: str
    platform: str = "linux/amd64"
    workdir: Path | None = None
    patch_files: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (patch id, the files it changes)

    def present(self, client: RegistryClient, repository: str, digest: str) -> set[str]:
        """The kinds already attached to digest and signed by this key (a smoke verdict only when it passed)."""
        kinds: set[str] = set()
        key = self.signer.public_key
        for item in fetch(client, repository, digest):
            verdict = envelope.check(item.data, key)
            if item.kind is None or verdict.statement is None or verdict.status != "verified":
                continue
            if subject_digest(verdict.statement) != digest:
                continue
            if item.kind == "smoke" and verdict.statement["predicate"].get("passed") is not True:
                continue
            kinds.add(item.kind)
        return kinds

    def ensure(self, client: RegistryClient, repository: str, digest: str, report: SmokeReport) -> AttestResult:
        if not report.passed or report.digest != digest:
            raise StepFailed(f"{digest}: no passing smoke report of this digest to attest")
        kept = self.present(client, repository, digest)
        info = client.head_manifest(repository, digest)
        if info is None:
            raise StepFailed(f"{digest} is not in {client.host}/{repository}")
        name = f"{client.host}/{repository}"
        seconds: dict[str, float] = {}
        statements = {}
        if "sbom" not in kept:
            started = time.monotonic()
            with tempfile.TemporaryDirectory(dir=self.workdir) as scratch:
                statements["sbom"] = statement("sbom", name, digest,
                                               syft.sbom(client, repository, digest, self.platform, Path(scratch)))
            seconds["sbom"] = time.monotonic() - started
        if "provenance" not in kept:
            labels = client.image_labels(repository, digest)
            record = read_provenance(client, repository, digest, PROVENANCE_FILE)
            statements["provenance"] = statement("provenance", name, digest, provenance_predicate(
                image_record=record, labels=labels, factory_version=factory_version(), runner=runner(),
                patch_files=dict(self.patch_files)))
        if "smoke" not in kept:
            statements["smoke"] = statement("smoke", name, digest,
                                            smoke_predicate(report.to_dict(), gpu=self.gpu, runner=runner()))
        attached = {}
        started = time.monotonic()  # signing only: the statements are made above
        envelopes = {kind: envelope.sign(body, self.signer) for kind, body in statements.items()}
        seconds["sign"] = time.monotonic() - started
        for kind, data in envelopes.items():
            annotations = {PREDICATE_ANNOTATION: PREDICATES[kind],  # type: ignore[index]
                           "org.opencontainers.image.created": utc_now()}
            attached[kind] = attach(client, repository, info, ENVELOPE_TYPE, data, annotations, f"{kind}.dsse.json")
        return AttestResult(attached=attached, kept=tuple(k for k in KINDS if k in kept), seconds=seconds)


def configured_attestor(workdir: Path | None = None) -> Attestor | None:
    """The Attestor of the environment's signing key (checked now, before any network call), or None."""
    signer = keys.configured_signer()
    return Attestor(signer=signer, gpu="", workdir=workdir) if signer else None


def for_cell(attestor: Attestor, cell: Cell, patches: Iterable[PatchRecord] = ()) -> Attestor:
    """The attestor for one cell: its platform, the GPU its smoke verdict ran for, and the files
    its patch records change (named in the provenance)."""
    arch = cell.arch
    gpu = f"{arch.name} (compute capability {arch.compute_capability})" if arch.gpu else "none (cpu)"
    files = tuple((p.id, changed_files(p.kind, p.content, p.target)) for p in patches)
    return replace(attestor, gpu=gpu, platform=cell.platform, patch_files=files)

"""DSSE envelopes around in-toto statements: signing, and the verdict on one envelope (pure).

The signature is over DSSE's pre-authentication encoding (PAE), computed by securesystemslib:
    "DSSEv1" SP len(payloadType) SP payloadType SP len(payload) SP payload
(lengths in ASCII decimal bytes). ECDSA P-256 over SHA-256, DER-encoded, base64 in the envelope:
what cosign writes and reads. Each signature names its key by keyid, so a signature by another key
("wrong key") is told apart from a payload changed after signing ("tampered").

>>> pae("application/vnd.in-toto+json", b"{}")
b'DSSEv1 28 application/vnd.in-toto+json 2 {}'
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # imported where used: machines without the signing libraries (the GPU host) run the CLI too
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import Key, Signer

PAYLOAD_TYPE = "application/vnd.in-toto+json"
ENVELOPE_TYPE = "application/vnd.dsse.envelope.v1+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"

EnvelopeStatus = Literal["verified", "unsigned", "wrong-key", "tampered"]


@dataclass(frozen=True, kw_only=True)
class EnvelopeVerdict:
    status: EnvelopeStatus
    reason: str
    statement: dict[str, Any] | None = None  # the signed statement, when it verified


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding, from securesystemslib (the bytes that are signed)."""
    from securesystemslib.dsse import Envelope
    return Envelope(payload, payload_type, {}).pae()


def canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def sign(statement: dict[str, Any], signer: Signer) -> bytes:
    """The envelope JSON of statement, signed by signer."""
    from securesystemslib.dsse import Envelope
    envelope = Envelope(canonical(statement), PAYLOAD_TYPE, {})
    envelope.sign(signer)
    return canonical(envelope.to_dict())


def check(data: bytes, key: Key | None) -> EnvelopeVerdict:
    """The verdict on one envelope: with key None, only whether it parses and carries signatures."""
    from securesystemslib.exceptions import UnverifiedSignatureError, VerificationError
    envelope = _parse(data)
    if isinstance(envelope, str):
        return EnvelopeVerdict(status="tampered", reason=envelope)
    if envelope.payload_type != PAYLOAD_TYPE:
        return EnvelopeVerdict(status="tampered", reason=f"payloadType is {envelope.payload_type[:60]!r}, "
                                                         f"not {PAYLOAD_TYPE}")
    if not envelope.signatures:
        return EnvelopeVerdict(status="unsigned", reason="the envelope carries no signature")
    statement = _statement(envelope.payload)
    if key is None:
        return EnvelopeVerdict(status="verified" if statement else "tampered",
                               reason="signature not checked (no key)" if statement else "payload is not a statement",
                               statement=statement)
    if key.keyid not in envelope.signatures:
        others = ", ".join(sorted(k[:12] for k in envelope.signatures))
        return EnvelopeVerdict(status="wrong-key", reason=f"signed by key {others}, not by {key.keyid[:12]}")
    try:
        envelope.verify([key], 1)
    except (VerificationError, UnverifiedSignatureError):
        return EnvelopeVerdict(status="tampered", reason="the signature does not match the payload")
    if statement is None:
        return EnvelopeVerdict(status="tampered", reason="the signed payload is not an in-toto statement")
    return EnvelopeVerdict(status="verified", reason="signature verified", statement=statement)


def _parse(data: bytes) -> Envelope | str:
    from securesystemslib.dsse import Envelope
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return "the attestation is not JSON"
    if not isinstance(raw, dict) or not isinstance(raw.get("signatures"), list):
        return "the attestation is not a DSSE envelope"
    try:
        if not all(isinstance(s, dict) and isinstance(s.get("sig"), str) for s in raw["signatures"]):
            raise ValueError("signature")
        base64.b64decode(str(raw.get("payload")), validate=True)
        return Envelope.from_dict(raw)
    except (KeyError, ValueError, TypeError, binascii.Error):
        return "the DSSE envelope is malformed (payload, payloadType or signatures)"


def _statement(payload: bytes) -> dict[str, Any] | None:
    try:
        statement = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
        return None
    if not isinstance(statement.get("subject"), list) or not isinstance(statement.get("predicate"), dict):
        return None
    return statement

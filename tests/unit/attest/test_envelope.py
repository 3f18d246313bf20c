"""DSSE envelopes: the PAE bytes of the spec, and a verdict for each way an envelope goes wrong."""

from __future__ import annotations

import base64
import json

from securesystemslib.signer import CryptoSigner

from builder.attest import envelope
from builder.attest.statements import statement


def _statement(digest: str = "sha256:" + "ab" * 32) -> dict:
    return statement("smoke", "127.0.0.1:5000/llm-factory/images", digest, {"passed": True})


def test_pae_is_the_specs_encoding():
    # DSSE protocol.md: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body, lengths in ASCII decimal
    assert envelope.pae("http://example.com/HelloWorld", b"hello world") == \
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    assert envelope.pae("t", "é".encode()) == b"DSSEv1 1 t 2 \xc3\xa9"  # bytes, not characters


def test_a_signed_statement_verifies_with_its_key_only():
    signer, other = CryptoSigner.generate_ecdsa(), CryptoSigner.generate_ecdsa()
    data = envelope.sign(_statement(), signer)
    ok = envelope.check(data, signer.public_key)
    assert ok.status == "verified" and ok.statement == _statement()
    wrong = envelope.check(data, other.public_key)
    assert wrong.status == "wrong-key" and signer.public_key.keyid[:12] in wrong.reason


def test_an_edited_payload_is_tampered():
    signer = CryptoSigner.generate_ecdsa()
    raw = json.loads(envelope.sign(_statement(), signer))
    edited = _statement()
    edited["predicate"]["passed"] = False
    raw["payload"] = base64.b64encode(envelope.canonical(edited)).decode()
    verdict = envelope.check(json.dumps(raw).encode(), signer.public_key)
    assert (verdict.status, verdict.reason) == ("tampered", "the signature does not match the payload")


def test_corrupted_and_unsigned_envelopes():
    signer = CryptoSigner.generate_ecdsa()
    raw = json.loads(envelope.sign(_statement(), signer))
    assert envelope.check(b"\x00not json", signer.public_key).status == "tampered"
    assert envelope.check(b'{"payload": 1}', signer.public_key).reason == "the attestation is not a DSSE envelope"
    assert envelope.check(json.dumps({**raw, "payload": "%%%"}).encode(), signer.public_key).status == "tampered"
    assert envelope.check(json.dumps({**raw, "payloadType": "text/plain"}).encode(),
                          signer.public_key).status == "tampered"
    assert envelope.check(json.dumps({**raw, "signatures": []}).encode(), signer.public_key).status == "unsigned"
    bad_sig = {**raw, "signatures": [{**raw["signatures"][0], "sig": base64.b64encode(b"x" * 70).decode()}]}
    assert envelope.check(json.dumps(bad_sig).encode(), signer.public_key).status == "tampered"


def test_openssl_alone_verifies_a_signature_over_the_specs_pae(tmp_path):
    """Interoperability: another implementation (openssl) accepts the signature over PAE bytes made by hand
    from the spec, so any DSSE verifier with the public key can check our envelopes."""
    import shutil
    import subprocess

    from builder.attest import keys

    openssl = shutil.which("openssl")
    if openssl is None:
        import pytest
        pytest.skip("openssl is not installed")
    pair = keys.create(tmp_path / "signing.key")
    raw = json.loads(envelope.sign(_statement(), keys.signer_from_file(pair.private, "test")))
    payload = base64.b64decode(raw["payload"])
    kind = raw["payloadType"].encode()
    pae = b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)
    (tmp_path / "pae.bin").write_bytes(pae)
    (tmp_path / "sig.der").write_bytes(base64.b64decode(raw["signatures"][0]["sig"]))
    argv = [openssl, "dgst", "-sha256", "-verify", str(pair.public), "-signature", str(tmp_path / "sig.der")]
    done = subprocess.run(argv + [str(tmp_path / "pae.bin")], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "Verified OK" in done.stdout, done.stdout + done.stderr
    (tmp_path / "pae.bin").write_bytes(pae.replace(b"DSSEv1", b"DSSEv2"))
    done = subprocess.run(argv + [str(tmp_path / "pae.bin")], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1

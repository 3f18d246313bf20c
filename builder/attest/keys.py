"""Signing keys: `builder keys create`, and where a command finds the private and public key.

An ECDSA P-256 key pair (cosign's default kind; its public key is the same PEM SubjectPublicKeyInfo
that `cosign verify --key` reads). The private key is PKCS#8 PEM, unencrypted, written with mode
0600 and refused when group or others may read it; it comes from BUILDER_SIGNING_KEY (the PEM text,
for a CI secret) or BUILDER_SIGNING_KEY_FILE (a path). Its text never reaches a message, a log, a
label or a report: errors name the variable or the path only.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: machines without the signing libraries (the GPU host) run the CLI too
    from securesystemslib.signer import CryptoSigner, SSlibKey

from builder.errors import InputError

KEY_ENV = "BUILDER_SIGNING_KEY"
KEY_FILE_ENV = "BUILDER_SIGNING_KEY_FILE"
PUBLIC_KEY_ENV = "BUILDER_VERIFY_KEY"
_MAX_PEM = 16 * 1024  # a P-256 key is ~250 bytes; anything this large is not one


@dataclass(frozen=True, kw_only=True)
class KeyPair:
    private: Path
    public: Path
    keyid: str


def create(private: Path, *, force: bool = False) -> KeyPair:
    """Write a new key pair: `private` (0600) and `private` with `.pub` (0644). Refuses to overwrite."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    public = private.with_name(private.name + ".pub") if private.suffix != ".key" else private.with_suffix(".pub")
    for path in (private, public):
        if path.exists() and not force:
            raise InputError(f"{path} exists: choose another --out or pass --force to replace the key pair")
    if not private.parent.is_dir():
        raise InputError(f"--out: {private.parent} is not a directory")
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    if force:
        private.unlink(missing_ok=True)
    # O_EXCL with mode 0600: the key is never on disk with wider rights, not even for a moment
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return KeyPair(private=private, public=public, keyid=public_key(public).keyid)


def configured_signer() -> CryptoSigner | None:
    """The signer the environment names (BUILDER_SIGNING_KEY, then BUILDER_SIGNING_KEY_FILE), or None."""
    text = os.environ.get(KEY_ENV)
    if text:
        return _signer(text.encode(), KEY_ENV)
    path = os.environ.get(KEY_FILE_ENV)
    if path:
        return signer_from_file(Path(path), KEY_FILE_ENV)
    return None


def signer_from_file(path: Path, where: str) -> CryptoSigner:
    try:
        info = path.stat()
    except OSError as exc:
        raise InputError(f"{where}: cannot read the signing key {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{where}: {path} is not a regular file")
    if info.st_mode & 0o077:
        raise InputError(f"{where}: {path} may be read by others (mode {stat.S_IMODE(info.st_mode):04o}): "
                         f"chmod 600 {path}")
    return _signer(_bounded(path, where), f"{where} ({path})")


def _bounded(path: Path, where: str) -> bytes:
    with open(path, "rb") as handle:
        data = handle.read(_MAX_PEM + 1)
    if len(data) > _MAX_PEM:
        raise InputError(f"{where}: {path} is over {_MAX_PEM} bytes: not a PEM key")
    return data


def _signer(pem: bytes, where: str) -> CryptoSigner:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from securesystemslib.signer import CryptoSigner
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):  # the message could quote the key: never shown
        raise InputError(f"{where}: not an unencrypted PEM private key (make one with `builder keys create`)") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise InputError(f"{where}: the signing key must be ECDSA P-256 (make one with `builder keys create`)")
    return CryptoSigner(key)


def public_key(path: Path, where: str = "--key") -> SSlibKey:
    """The verification key of a PEM public key file (`<name>.pub` of `builder keys create`, or cosign.pub)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from securesystemslib.signer import SSlibKey
    try:
        if not path.is_file():
            raise InputError(f"{where}: {path} is not a file")
        data = _bounded(path, where)
    except OSError as exc:
        raise InputError(f"{where}: cannot read {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise InputError(f"{where}: {path} is not a PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise InputError(f"{where}: {path} is not an ECDSA P-256 public key")
    return SSlibKey.from_crypto(key)

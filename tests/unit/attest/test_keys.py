"""Signing keys: created 0600, found through the environment, refused when loose or not a key; never echoed."""

from __future__ import annotations

import os
import stat

import pytest

from builder.attest import keys
from builder.errors import InputError


def test_create_writes_a_private_key_only_its_owner_reads(tmp_path):
    pair = keys.create(tmp_path / "signing.key")
    assert stat.S_IMODE(os.stat(pair.private).st_mode) == 0o600
    assert pair.public == tmp_path / "signing.pub" and b"PUBLIC KEY" in pair.public.read_bytes()
    assert keys.public_key(pair.public).keyid == pair.keyid
    with pytest.raises(InputError, match="exists"):
        keys.create(tmp_path / "signing.key")
    assert keys.create(tmp_path / "signing.key", force=True).keyid != pair.keyid


def test_the_environment_names_the_key(tmp_path, monkeypatch):
    pair = keys.create(tmp_path / "signing.key")
    monkeypatch.delenv(keys.KEY_ENV, raising=False)
    monkeypatch.delenv(keys.KEY_FILE_ENV, raising=False)
    assert keys.configured_signer() is None
    monkeypatch.setenv(keys.KEY_FILE_ENV, str(pair.private))
    assert keys.configured_signer().public_key.keyid == pair.keyid
    monkeypatch.setenv(keys.KEY_ENV, pair.private.read_text())  # the PEM text wins (a CI secret)
    assert keys.configured_signer().public_key.keyid == pair.keyid


def test_bad_keys_are_one_line_input_errors_without_the_key_text(tmp_path, monkeypatch):
    pair = keys.create(tmp_path / "signing.key")
    text = pair.private.read_text()
    os.chmod(pair.private, 0o644)
    monkeypatch.delenv(keys.KEY_ENV, raising=False)
    monkeypatch.setenv(keys.KEY_FILE_ENV, str(pair.private))
    with pytest.raises(InputError, match="may be read by others .mode 0644.: chmod 600"):
        keys.configured_signer()
    secret_line = text.splitlines()[1]
    monkeypatch.setenv(keys.KEY_ENV, text.replace(secret_line, secret_line[::-1]))
    with pytest.raises(InputError) as err:
        keys.configured_signer()
    assert str(err.value).startswith("BUILDER_SIGNING_KEY: not an unencrypted PEM private key")
    assert secret_line not in str(err.value) and secret_line[::-1] not in str(err.value)
    monkeypatch.setenv(keys.KEY_ENV, pair.public.read_text())
    with pytest.raises(InputError, match="not an unencrypted PEM private key"):
        keys.configured_signer()
    with pytest.raises(InputError, match="is not a PEM public key"):
        keys.public_key(tmp_path / "signing.key", "--key")
    with pytest.raises(InputError, match="is not a file"):
        keys.public_key(tmp_path, "--key")

"""Redaction and escaping: every credential form masked, every control character escaped."""

from __future__ import annotations

import io

import pytest

from builder.oci.auth import Secret
from builder.safetext import SafeStream, lines_shown, printable, redact, shown

SECRET = "hunter2-Zq9"


@pytest.mark.parametrize("text", [
    f"GET http://alice:{SECRET}@127.0.0.1:8000/v1/models failed",
    f"--url https://{SECRET}@example.com",  # a token as the URL's user part
    f"--repo 'https:/tok:{SECRET}@example.invalid/x.git' is not a directory",  # pathlib ate a slash
    f"BUILDER_REGISTRY: 'alice:{SECRET}@127.0.0.1:5000' is not a registry host",
    f"Authorization: Bearer {SECRET}",
    f"Authorization: Basic {SECRET}",
    f'{{"token": "{SECRET}", "expires_in": 60}}',
    f"https://h/x?access_token={SECRET}&n=1",
    f"password={SECRET}",
])
def test_every_credential_form_is_masked(text):
    assert SECRET not in redact(text) and "***" in redact(text)


@pytest.mark.parametrize("text", [
    "vllm/vllm-openai:v0.6.3@sha256:" + "a" * 64,  # a tag and a digest: no credential
    "token service auth.example.com unreachable",
    "registry 127.0.0.1:5000 unreachable: Connection refused",
    "http://127.0.0.1:8000/v1/models",
])
def test_what_is_not_a_credential_is_left_alone(text):
    assert redact(text) == text


def test_control_characters_and_surrogates_are_escaped():
    assert printable("tiny\x1b]0;pwned\x07") == "tiny\\x1b]0;pwned\\x07"
    assert printable("a\udcffb") == "a\\udcffb"
    assert printable("left\u202eright") == "left\\u202eright"  # a bidi override
    assert printable("two\nlines\r") == "two\\x0alines\\x0d"  # one line stays one line
    assert printable("Décris 漢字") == "Décris 漢字"
    assert shown(f"http://a:{SECRET}@h/\x1b[2J") == "http://***@h/\\x1b[2J"
    assert lines_shown("a\tb\nc\x1b") == "a\tb\nc\\x1b"


def test_the_stream_filter_sees_a_credential_split_across_writes():
    inner = io.StringIO()
    stream = SafeStream(inner)  # type: ignore[arg-type]
    stream.write("GET http://alice:hun")
    stream.write("ter2-Zq9@host/ failed\nnext \x1b[31m")
    stream.flush()
    assert inner.getvalue() == "GET http://***@host/ failed\nnext \\x1b[31m"


def test_a_secret_never_shows_in_repr_or_str():
    secret = Secret(SECRET)
    assert SECRET not in repr(secret) and SECRET not in str(secret) and SECRET not in f"{secret!r} {secret}"
    assert SECRET not in repr({"password": secret}) and secret.reveal() == SECRET


def test_a_model_id_with_a_fingerprint_is_not_taken_for_credentials():
    """generated:tiny-llama@<fingerprint> looks like user:pw@host; masking it made every `builder smoke --json`
    report name the model '***@...', so a --golden comparison named another model and skipped."""
    from builder.safetext import redact
    assert redact("model generated:tiny-llama@d9537f811c98") == "model generated:tiny-llama@d9537f811c98"
    assert redact('{"model": "path:models@1a2b3c"}') == '{"model": "path:models@1a2b3c"}'
    for registry in ("bob:pw@127.0.0.1:5000", "bob:pw@registry.example", "bob:pw@localhost", "bob:pw@[::1]:5000"):
        assert redact(f"registry {registry} unreachable").startswith("registry ***@"), registry


def test_a_token_id_in_a_report_is_not_taken_for_a_token():
    """`"token": 938` in a smoke report's evidence (a token id) came out as `"token": ***`: invalid JSON on stdout,
    seen on the H200 with `builder smoke --url --json`. A value of digits only is a count, not a credential."""
    from builder.safetext import redact
    assert redact('"token": 938, "text": "Be"') == '"token": 938, "text": "Be"'
    assert redact('"token": "s3cr3t"') == '"token": "***"' and redact("token=abc123") == "token=***"

"""What reaches a terminal, a log, a page or a report: credentials masked, control characters escaped.

Two functions, used wherever a string from a peer, a record or an argument is shown:

- `redact(text)` masks every credential form the factory meets: the user part of a URL
  (`https://user:pw@host`, `https://TOKEN@host`), a bare `user:pw@host` registry (BUILDER_REGISTRY),
  and `Bearer`/`Basic` authorisation values. What is left says where, never with what.
- `printable(text)` escapes control characters (ESC, BEL, CR, NUL, C1, bidi overrides) and lone
  surrogates as `\\xNN`/`\\uNNNN`, so a model id or a lock file cannot move the cursor, retitle the
  terminal or hide text. Newlines and tabs are escaped too: a message stays one line.

>>> redact("GET https://bob:s3cret@registry.example/v2/ failed")
'GET https://***@registry.example/v2/ failed'
>>> redact("registry bob:s3cret@127.0.0.1:5000 unreachable")
'registry ***@127.0.0.1:5000 unreachable'
>>> redact("model generated:tiny-llama@d9537f811c98")
'model generated:tiny-llama@d9537f811c98'
>>> redact("Authorization: Bearer eyJhbGciOi.abc")
'Authorization: Bearer ***'
>>> printable("model\\x1b]0;pwned\\x07")
'model\\\\x1b]0;pwned\\\\x07'
"""

from __future__ import annotations

import io
import re
import unicodedata
from typing import TextIO

MASK = "***"
# scheme://userinfo@ : everything between // and the last @ before the host's end is a credential
_URL_USER = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*:/+)(?P<user>[^/?#\s@]*@)")  # :/ too: a path-normalised URL
# a bare user:pw@host (no scheme), as BUILDER_REGISTRY or a docker-style reference may carry it
# (not a digest reference: name:tag@sha256:...)
# The host must look like one (a dot, a port, localhost or [IPv6]): a model id such as
# generated:tiny-llama@d9537f811c98 (name:variant@fingerprint) is not a credential, and masking it broke the
# golden check's model comparison in `builder smoke --json` output.
_BARE_USER = re.compile(r"(?<![\w/@:.-])(?P<user>[^\s/@:'\"=]+:[^\s/@'\"]*@)"
                        r"(?=localhost\b|\[|[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+|[A-Za-z0-9.-]+:[0-9]+\b)"
                        r"(?![a-z0-9]+:[0-9a-f]{32})")
_AUTH_SCHEME = re.compile(r"\b(?P<kind>Bearer|Basic)(?P<sep>\s+)(?P<value>[A-Za-z0-9._~+/=-]{6,})")
_AUTH_FIELD = re.compile(r"(?P<kind>\b(?:access_token|token|password|passwd|secret)\b)(?P<sep>\"?\s*[=:]\s*\"?)"
                         r"(?P<value>(?=[^\s,;\"'&}]*[^\s,;\"'&}0-9.])[^\s,;\"'&}]+)", re.IGNORECASE)
# (a value of digits only is a count, e.g. a report's "token": 1234 - a token id, not a credential)


def redact(text: str) -> str:
    """`text` with every URL user part, bare `user:pw@` and Bearer/Basic/token value masked."""
    text = _URL_USER.sub(lambda m: m.group("scheme") + MASK + "@", text)
    text = _BARE_USER.sub(MASK + "@", text)
    for pattern in (_AUTH_SCHEME, _AUTH_FIELD):
        text = pattern.sub(lambda m: m.group("kind") + m.group("sep") + MASK, text)
    return text


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _unsafe(char: str) -> bool:
    category = unicodedata.category(char)
    # Cc: C0/C1 controls (ESC, BEL, CR, NUL, CSI); Cs: lone surrogates (unencodable, crash print);
    # Cf: format characters (bidi overrides, zero-width) that make shown text differ from the bytes
    return category in ("Cc", "Cs", "Cf")


def printable(text: str) -> str:
    """`text` with control, format and surrogate characters escaped (one line, terminal-safe)."""
    if text.isprintable():  # the common case, without a per-character walk
        return text
    return "".join(_escape(c) if _unsafe(c) else c for c in text)


def shown(text: object) -> str:
    """Both: what any message built from outside strings goes through before it is shown."""
    return printable(redact(str(text)))


def lines_shown(text: str) -> str:
    """shown() for multi-line output (a report, a table): line ends and tabs kept, the rest escaped."""
    return "\n".join("\t".join(shown(part) for part in line.split("\t")) for line in redact(text).split("\n"))


class SafeStream(io.TextIOBase):
    """A text stream that passes what is written through lines_shown(), a line at a time (so a
    credential split across two writes is still seen whole). The CLI puts stdout and stderr behind
    one: whatever a command prints, no credential and no raw control character reaches the terminal."""

    def __init__(self, inner: TextIO):
        self.inner = inner
        self._pending = ""

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self.inner.encoding

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return self.inner.errors

    def isatty(self) -> bool:
        return self.inner.isatty()

    def fileno(self) -> int:
        return self.inner.fileno()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        done, sep, self._pending = (self._pending + text).rpartition("\n")
        if sep:
            self.inner.write(lines_shown(done) + "\n")
        if len(self._pending) > 1 << 16:  # no line end for 64 KiB: write it out anyway
            self.inner.write(lines_shown(self._pending))
            self._pending = ""
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self.inner.write(lines_shown(self._pending))
            self._pending = ""
        self.inner.flush()

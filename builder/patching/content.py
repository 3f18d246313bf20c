"""What a patch record's files may be: inside the record's directory, regular, bounded, and of their
kind (a diff parses as a unified diff with relative paths; an overlay is text). Checked at load."""


from __future__ import annotations

import re
from pathlib import Path

from builder import grammar
from builder.errors import ConfigError
from builder.matrix.schema import MappingReader
from builder.util import read_bounded

MAX_CONTENT_BYTES = 8 << 20  # a diff or overlay file larger than this is refused


def _content(r: MappingReader, key: str, name: str, check) -> bytes:
    """The bytes of the file `name` of the record's directory, refused (at the key's line) when it
    leaves the directory, is not a regular file, is too large or is not what its kind needs."""
    folder = Path(r.source).parent
    path = folder / name
    try:
        inside = path.resolve(strict=True).is_relative_to(folder.resolve(strict=True))
    except FileNotFoundError:
        raise r.error(key, f"{key} file '{name}' not found next to patch.yaml") from None
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
        raise r.error(key, f"{key} file '{name}' cannot be read: {getattr(exc, 'strerror', None) or exc}") from None
    if not inside:
        raise r.error(key, f"{key} file '{name}' is a symlink out of the record's directory; "
                           "a record may only carry its own files")
    try:
        data = read_bounded(path, MAX_CONTENT_BYTES, what=f"{key} file")
    except ConfigError as exc:
        raise r.error(key, f"{key} file '{name}' {exc.detail}") from None
    problem = check(data)
    if problem:
        raise r.error(key, f"{key} file '{name}' {problem}")
    return data


def _check_text(data: bytes) -> str | None:
    if not data.strip():
        return "is empty"
    if b"\0" in data:
        return "is binary (it holds NUL bytes); an overlay replaces a text file"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return "is not UTF-8 text"
    return None


_HUNK = re.compile(r"@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def _check_diff(data: bytes) -> str | None:
    """None when data is a unified diff (what `diff -ru a/ b/` or `git diff` write) of text files
    whose paths stay inside the source tree; else what is wrong."""
    problem = _check_text(data)
    if problem:
        return problem.replace("an overlay replaces a text file", "a diff is text")
    lines = data.decode("utf-8").splitlines()
    files = 0
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("GIT binary patch") or (line.startswith("Binary files ") and line.endswith(" differ")):
            return f"line {index + 1}: binary patches are not supported"
        if not (line.startswith("--- ") and index + 1 < len(lines) and lines[index + 1].startswith("+++ ")):
            index += 1
            continue
        for header in (line, lines[index + 1]):
            name = header[4:].split("\t", 1)[0].strip()
            if name != "/dev/null":
                stripped = name.split("/", 1)[1] if "/" in name else ""  # -p1: the a/ or b/ prefix goes
                if name.startswith("/") or not stripped or grammar.relative_path(stripped):
                    return (f"line {index + 1}: path '{name[:60]}' must be a/<relative path> or b/<relative path> "
                            "inside the source tree (no absolute paths, no '..')")
        index += 2
        hunks = 0
        while index < len(lines) and lines[index].startswith("@@"):
            match = _HUNK.match(lines[index])
            if not match:
                return f"line {index + 1}: malformed hunk header"
            old = int(match.group(2) if match.group(2) is not None else 1)
            new = int(match.group(4) if match.group(4) is not None else 1)
            index += 1
            while (old > 0 or new > 0) and index < len(lines):
                body = lines[index]
                if body.startswith("\\"):
                    index += 1
                    continue
                marker = body[:1]
                if marker in (" ", ""):
                    old, new = old - 1, new - 1
                elif marker == "-":
                    old -= 1
                elif marker == "+":
                    new -= 1
                else:
                    break
                index += 1
            if old != 0 or new != 0:
                return f"line {index}: a hunk's line counts do not match its header"
            while index < len(lines) and lines[index].startswith("\\"):
                index += 1
            hunks += 1
        if not hunks:
            return f"line {index}: file header without a hunk"
        files += 1
    if not files:
        return "is not a unified diff (no '--- a/...' / '+++ b/...' headers); write it with `diff -ru a/ b/`"
    return None

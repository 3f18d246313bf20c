"""Small helpers every stage shares: time stamps, redaction, the cache directory, bounded reads."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import stat
import tempfile
import urllib.parse
from pathlib import Path

from builder.errors import ConfigError

MAX_FILE_BYTES = 2 << 20  # what read_bounded reads at most unless told otherwise


def utc_now() -> str:
    """UTC, to the second, as the records and labels write it: 2026-12-01T22:03:00Z."""
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def redact(url: str) -> str:
    """A URL without user:password@ (tokens in git URLs must reach no label, record or message)."""
    parts = urllib.parse.urlsplit(url)
    if not parts.username and not parts.password:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def cache_dir() -> Path:
    """BUILDER_CACHE, else ~/.cache/llm-factory. Set but empty counts as unset (never the cwd)."""
    return Path(os.environ.get("BUILDER_CACHE") or Path.home() / ".cache" / "llm-factory")


def read_bounded(path: Path, limit: int = MAX_FILE_BYTES, what: str = "file") -> bytes:
    """The bytes of a regular file of at most `limit` bytes. FIFOs, devices and directories are
    refused before anything is read (opening a FIFO does not block: O_NONBLOCK)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ConfigError(str(path), None, "file not found; pass an existing file (e.g. --matrix matrix.yaml)"
                          if what == "YAML file" else f"{what} not found") from None
    except OSError as exc:
        raise ConfigError(str(path), None, f"cannot read: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ConfigError(str(path), None, f"is a directory, not a {what}")
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(str(path), None, f"is not a regular file (a FIFO, device or socket); give a {what}")
        if info.st_size > limit:
            raise ConfigError(str(path), None, f"is {info.st_size / (1 << 20):.1f} MiB; at most "
                                               f"{limit / (1 << 20):g} MiB are read")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:  # it grew while we read
                raise ConfigError(str(path), None, f"is larger than {limit / (1 << 20):g} MiB")
        return b"".join(chunks)
    except OSError as exc:
        raise ConfigError(str(path), None, f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def confined(path: Path, root: Path) -> Path:
    """`path`, checked for a write: not a symbolic link, and inside `root` once every link in its
    directories is resolved (InputError otherwise, before anything is written)."""
    if path.is_symlink():
        raise ConfigError(str(path), None, "is a symbolic link; the factory writes only a regular file here "
                                           "(remove the link)")
    real_root, real_parent = root.resolve(), path.parent.resolve()
    if real_parent != real_root and real_root not in real_parent.parents:
        raise ConfigError(str(path), None, f"resolves outside {root} (a linked directory); the factory writes "
                                           "only beside matrix.yaml")
    if path.exists() and not path.is_file():
        raise ConfigError(str(path), None, "is not a regular file")
    return path


def write_replacing(path: Path, text: str, root: Path) -> None:
    """Write `text` to `path` (confined to `root`) through a temporary file renamed over it: a link
    planted between the check and the write is replaced, never followed, and a reader never sees half."""
    confined(path, root)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise

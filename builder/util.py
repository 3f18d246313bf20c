"""Small helpers every stage shares: time stamps, redaction, the cache directory."""

from __future__ import annotations

import datetime as dt
import os
import urllib.parse
from pathlib import Path


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

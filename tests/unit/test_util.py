"""Shared helpers: redaction, the cache directory, time stamps."""

from __future__ import annotations

import re
from pathlib import Path

from builder.matrix.model import SourceRef
from builder.patching.sources import default_cache_dir
from builder.promotion.promote import lock_path
from builder.util import cache_dir, redact, utc_now


def test_redact_strips_user_and_password_from_urls():
    assert redact("https://bot:s3cret@git.example.com:3000/o/vllm.git") == "https://git.example.com:3000/o/vllm.git"
    assert redact("https://git.example.com/o/vllm.git") == "https://git.example.com/o/vllm.git"
    assert "s3cret" not in SourceRef("git", url="https://bot:s3cret@h/o/v.git", commit="a" * 40).describe()


def test_an_empty_builder_cache_means_the_default_for_sources_and_locks_alike(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("BUILDER_CACHE", "")
    default = tmp_path / ".cache" / "llm-factory"
    assert cache_dir() == default and default_cache_dir() == default
    assert lock_path("h", "r", "c").parent == default / "locks"
    assert Path.cwd() not in (cache_dir(), default_cache_dir())
    monkeypatch.setenv("BUILDER_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c" and lock_path("h", "r", "c").parent == tmp_path / "c" / "locks"


def test_utc_now_is_second_resolution_with_a_z():
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", utc_now())

"""Shared helpers: redaction, the cache directory, time stamps."""

from __future__ import annotations

from builder.matrix.model import SourceRef
from builder.util import redact


def test_tokens_in_git_urls_never_reach_labels_or_provenance():
    assert redact("https://bot:s3cret@git.example.com:3000/o/vllm.git") == "https://git.example.com:3000/o/vllm.git"
    assert "s3cret" not in SourceRef("git", url="https://bot:s3cret@h/o/v.git", commit="a" * 40).describe()

"""The one vocabulary of every check's outcome (smoke checks, library audits, speed checks): a status
from a closed set, one line of evidence a person reads, and JSON-able details."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

CheckStatus = Literal["pass", "fail", "skip"]
PASS: Final[CheckStatus] = "pass"
FAIL: Final[CheckStatus] = "fail"
SKIP: Final[CheckStatus] = "skip"


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: CheckStatus
    evidence: str  # one line a person reads
    data: dict[str, Any] = field(default_factory=dict)  # JSON-able details


def one_line(text: str, limit: int = 200) -> str:
    """Whitespace folded to single spaces, cut at `limit` characters with an ellipsis.

    >>> one_line("boot failed:\\n  CUDA error", 15)
    'boot failed: C…'
    """
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"

"""The known-good record, its tags and the lock file (pure): what the record store keeps.

The registry is the source of truth: every runner reads it with its registry credentials alone, no
shared disk. Layout, in the repository `<repository>-records` of the same registry:
  tag `<cell id>`          the cell's known-good record (KnownGoodRecord JSON)
  tag `smoke-<64 hex>`     the smoke report of one image digest (sha256)
Each is an OCI manifest with the empty config and one JSON layer (artifactType says which), so
`oras pull`, `crane manifest` or `skopeo inspect` can read them too.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from builder.errors import InputError
from builder.yamlout import scalar

RECORD_TYPE = "application/vnd.llmfactory.known-good.v1+json"
SMOKE_TYPE = "application/vnd.llmfactory.smoke-report.v1+json"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG = b"{}"
SMOKE_PREFIX = "smoke-"
BISECT_TYPE = "application/vnd.llmfactory.bisect.v1+json"
BISECT_PREFIX = "bisect-"
WATCH_TYPE = "application/vnd.llmfactory.watch.v1+json"
WATCH_PREFIX = "watch-"  # `builder watch` decisions (builder/watch/state.py)
HISTORY_LIMIT = 50  # keeps a record a few KiB however often a cell is promoted
SCHEMA = 1
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def records_repository(repository: str) -> str:
    return f"{repository}-records"


def check_digest(digest: str) -> str:
    if not _DIGEST.match(digest or ""):
        raise InputError(f"{digest!r} is not an image digest (sha256:<64 hex digits>)")
    return digest


def bisect_tag(cell: str, key: str) -> str:
    """`bisect-<cell>-<hash>`: one bisect's answer (key: 16 hex digits over its endpoints and settings)."""
    if not re.fullmatch(r"[0-9a-f]{16}", key):
        raise ValueError(f"bisect key must be 16 hex digits, got {key!r}")
    return f"{BISECT_PREFIX}{cell}-{key}"


def smoke_tag(digest: str) -> str:
    return SMOKE_PREFIX + check_digest(digest).split(":", 1)[1]


@dataclass(frozen=True)
class HistoryEntry:
    digest: str
    promoted_at: str
    throughput_tps: float | None = None


@dataclass(frozen=True)
class KnownGoodRecord:
    cell: str
    digest: str
    image: str  # registry/repository@digest: what a deployment pulls
    immutable_tag: str
    content_hash: str
    promoted_at: str  # ISO 8601 UTC, e.g. 2026-11-23T11:00:00Z
    engine: str
    engine_version: str
    source: str
    patches: tuple[tuple[str, str], ...] = ()  # (patch id, sha256)
    smoke_summary: dict[str, Any] = field(default_factory=dict)
    golden: dict[str, str] = field(default_factory=dict)  # prompt -> greedy output of this image
    throughput_tps: float | None = None
    history: tuple[HistoryEntry, ...] = ()  # earlier known-good images of the cell, newest first
    sweep: dict[str, Any] | None = None  # the concurrency sweep of its smoke report (SweepResult JSON): context
    golden_profiles: dict[str, dict[str, str]] = field(default_factory=dict)  # serve profile -> greedy outputs
    # prompt -> {prompt_ids, output_ids, logprobs}: the goldens with this image's own scores (smoke/golden_scores.py)
    golden_scores: dict[str, Any] = field(default_factory=dict)

    def sweep_result(self) -> Any:
        """The recorded sweep as a SweepResult, None when absent or unreadable (it is context only)."""
        from builder.measure.sweepreport import SweepResult
        try:
            return SweepResult.from_dict(self.sweep) if self.sweep else None
        except (KeyError, TypeError, ValueError):
            return None

    def entry(self) -> HistoryEntry:
        return HistoryEntry(self.digest, self.promoted_at, self.throughput_tps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA, "cell": self.cell, "digest": self.digest, "image": self.image,
            "immutable_tag": self.immutable_tag, "content_hash": self.content_hash,
            "promoted_at": self.promoted_at, "engine": self.engine, "engine_version": self.engine_version,
            "source": self.source, "patches": [{"id": i, "sha256": s} for i, s in self.patches],
            "smoke_summary": self.smoke_summary, "golden": self.golden, "throughput_tps": self.throughput_tps,
            "history": [{"digest": h.digest, "promoted_at": h.promoted_at, "throughput_tps": h.throughput_tps}
                        for h in self.history],
            "sweep": self.sweep, "golden_profiles": self.golden_profiles, "golden_scores": self.golden_scores,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> "KnownGoodRecord":
        """Parse a record; ValueError (naming the field) when it is not one."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if data.get("schema", SCHEMA) != SCHEMA:
            raise ValueError(f"schema {data.get('schema')!r}, this builder reads {SCHEMA}")
        try:
            tps = data.get("throughput_tps")
            return cls(
                cell=str(data["cell"]), digest=check_digest(data["digest"]), image=str(data["image"]),
                immutable_tag=str(data.get("immutable_tag", "")), content_hash=str(data.get("content_hash", "")),
                promoted_at=str(data["promoted_at"]), engine=str(data.get("engine", "")),
                engine_version=str(data.get("engine_version", "")), source=str(data.get("source", "")),
                patches=tuple((str(p["id"]), str(p["sha256"])) for p in data.get("patches") or []),
                smoke_summary=dict(data.get("smoke_summary") or {}), golden=dict(data.get("golden") or {}),
                throughput_tps=float(tps) if tps is not None else None,
                history=tuple(HistoryEntry(str(h["digest"]), str(h["promoted_at"]),
                                           float(h["throughput_tps"]) if h.get("throughput_tps") is not None
                                           else None) for h in data.get("history") or []),
                sweep=dict(data["sweep"]) if isinstance(data.get("sweep"), dict) else None,
                golden_profiles={str(p): dict(o) for p, o in (data.get("golden_profiles") or {}).items()},
                golden_scores=dict(data["golden_scores"]) if isinstance(data.get("golden_scores"), dict) else {},
            )
        except KeyError as exc:
            raise ValueError(f"missing field {exc.args[0]!r}") from None
        except (TypeError, InputError) as exc:
            raise ValueError(str(exc)) from None




def _canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def lock_file(records: Iterable[KnownGoodRecord]) -> str:
    """The lock file users commit to deployment repos: cell -> image pinned by digest (YAML)."""
    by_cell = {r.cell: r for r in records}
    lines = ["# Known-good images, pinned by digest. Generated by `builder known-good export`",
             "# from the known-good records in the registry; every image passed the smoke test.",
             "# Regenerate it rather than editing it."]
    lines += [f"{scalar(cell)}: {scalar(by_cell[cell].image)}" for cell in sorted(by_cell)]
    if not by_cell:
        lines.append("{}")
    return "\n".join(lines) + "\n"

"""Where a bisect keeps what it learnt (side effects: files under the cache directory).

    <cache>/bisect/steps.json              verdict + metric per (image digest, settings hash, attempt),
                                           shared by every bisect: the same image measured the same
                                           way is never measured twice
    <cache>/bisect/sessions/<key>.json     one bisect's state (cell, good, bad, candidates, images made,
                                           steps so far), rewritten after every step

<cache> is builder.util.cache_dir() (BUILDER_CACHE, else ~/.cache/llm-factory). Every write is
atomic: a temporary file in the same directory, fsync, os.replace; an interrupt leaves the old or the
new file, never half of one.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from builder.util import cache_dir

from .errors import StateError
from .model import VERDICTS, Measurement, StepRecord, Verdict

SCHEMA = 1


def cache_root() -> Path:
    return cache_dir()


def bisect_dir(root: Path | None = None) -> Path:
    return (root or cache_root()) / "bisect"


def settings_hash(settings: Mapping[str, Any]) -> str:
    """16 hex digits over the canonical JSON of the benchmark settings (include the endpoints' digests)."""
    blob = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StateError(f"{path}: unreadable bisect state ({exc.__class__.__name__}); delete it to start over") from None


class StepCache:
    """Verdicts by (image digest, settings hash, attempt). Inconclusive answers are kept too, so a
    resumed retry starts at the next attempt instead of repeating the same sample count."""

    def __init__(self, path: Path):
        self.path = path
        data = read_json(path) or {"schema": SCHEMA, "entries": {}}
        if data.get("schema") != SCHEMA or not isinstance(data.get("entries"), dict):
            raise StateError(f"{path}: not a bisect step cache of schema {SCHEMA}")
        self._entries: dict[str, dict[str, Any]] = data["entries"]

    @staticmethod
    def key(digest: str, settings: str, attempt: int) -> str:
        return f"{digest}|{settings}|{attempt}"

    def get(self, digest: str, settings: str, attempt: int) -> Measurement | None:
        entry = self._entries.get(self.key(digest, settings, attempt))
        if not entry or entry.get("verdict") not in VERDICTS:
            return None
        return Measurement(verdict=entry["verdict"], metric={k: float(v) for k, v in entry["metric"].items()},
                           samples=int(entry.get("samples", 0)), note=str(entry.get("note", "")))

    def put(self, digest: str, settings: str, attempt: int, m: Measurement) -> None:
        self._entries[self.key(digest, settings, attempt)] = {
            "verdict": m.verdict, "metric": dict(m.metric), "samples": m.samples, "note": m.note,
            "recorded": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
        write_json_atomic(self.path, {"schema": SCHEMA, "entries": self._entries})

    def __len__(self) -> int:
        return len(self._entries)


def session_key(cell: str, good: str, bad: str, paths: Sequence[str], settings: str) -> str:
    blob = json.dumps([cell, good, bad, sorted(paths), settings])
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in cell)[:80]
    return f"{safe}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


@dataclass(frozen=True, kw_only=True)
class SessionState:
    cell: str
    good: str  # resolved shas of the endpoints
    bad: str
    settings: str  # settings_hash of the benchmark settings
    candidates: tuple[str, ...]  # shas, in bisect order
    images: Mapping[int, str] = field(default_factory=dict)  # index -> digest made (or found) so far
    steps: tuple[StepRecord, ...] = ()

    def history(self) -> dict[int, list[Verdict]]:
        out: dict[int, list[Verdict]] = {}
        for step in self.steps:
            out.setdefault(step.index, []).append(step.verdict)
        return out

    def with_image(self, index: int, digest: str) -> SessionState:
        return replace(self, images={**self.images, index: digest})

    def with_step(self, record: StepRecord) -> SessionState:
        return replace(self, steps=(*self.steps, record))

    def matches(self, other: SessionState) -> bool:
        return (self.cell, self.good, self.bad, self.settings, self.candidates) == (
            other.cell, other.good, other.bad, other.settings, other.candidates)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "cell": self.cell, "good": self.good, "bad": self.bad,
                "settings": self.settings, "candidates": list(self.candidates),
                "images": {str(k): v for k, v in sorted(self.images.items())},
                "steps": [s.to_dict() for s in self.steps]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SessionState:
        if d.get("schema") != SCHEMA:
            raise ValueError(f"schema {d.get('schema')!r}, expected {SCHEMA}")
        return cls(cell=str(d["cell"]), good=str(d["good"]), bad=str(d["bad"]), settings=str(d["settings"]),
                   candidates=tuple(d["candidates"]), images={int(k): str(v) for k, v in d["images"].items()},
                   steps=tuple(StepRecord.from_dict(s) for s in d["steps"]))


def save_state(path: Path, state: SessionState) -> None:
    write_json_atomic(path, state.to_dict())


def load_state(path: Path) -> SessionState | None:
    data = read_json(path)
    if data is None:
        return None
    try:
        return SessionState.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise StateError(f"{path}: not a bisect session state ({exc}); delete it to start over") from None


def resume_or_start(path: Path, fresh: SessionState) -> SessionState:
    """The saved state when it belongs to the same bisect, else `fresh`; a state for the same key but
    other candidates (the history was rewritten) is an error naming the file."""
    saved = load_state(path)
    if saved is None:
        return fresh
    if not saved.matches(fresh):
        raise StateError(f"{path}: saved bisect has other endpoints or candidates; delete it to start over")
    return saved

"""Gathering a board's evidence from the registry: the only module of the board that reads anything.

`StoreSource` reads through the promotion stage's RecordStore (known-good records, smoke reports
by digest, the watch's decisions) and `newest_image` (the newest immutable image of a cell);
`collect_evidence` asks it, per cell, for what the board shows, and `collect_watch` for the watch's
records. Tests hand them any other `RecordSource` / `WatchSource`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, TypeVar

from builder.board.model import BuiltImage, CellEvidence
from builder.board.watchlog import WatchEvidence
from builder.errors import InputError, StepFailed
from builder.names import immutable_tag_pattern
from builder.oci.registry import RegistryClient
from builder.promotion.store import RecordStore, newest_image


class RecordSource(Protocol):
    def known_good(self, cell_id: str) -> Mapping[str, Any] | None: ...
    def smoke_report(self, digest: str) -> Mapping[str, Any] | None: ...
    def newest_image(self, cell_id: str) -> BuiltImage | None: ...


def collect_evidence(source: RecordSource, cell_ids: Iterable[str], *,
                     history_reports: bool = True) -> dict[str, CellEvidence]:
    """Per cell: its record, its newest image and the smoke reports the board shows (the newest
    image's, the known-good's, and with history_reports those of earlier known-good digests, whose
    sweeps fill the chart where a history entry has only one number)."""
    evidence: dict[str, CellEvidence] = {}
    for cell_id in cell_ids:
        problems: list[str] = []
        record = _read(lambda: source.known_good(cell_id), f"{cell_id}: its known-good record", problems)
        latest = _read(lambda: source.newest_image(cell_id), f"{cell_id}: its newest image", problems)
        digests = [latest.digest] if latest else []
        if record is not None:
            digests += [str(d) for d in [record.get("digest")] if _is_digest(d)]
            history = record.get("history") if history_reports else None
            if isinstance(history, list):
                entries = [h.get("digest") for h in history[:MAX_HISTORY] if isinstance(h, Mapping)]
                bad = [d for d in entries if not _is_digest(d)]
                if bad:
                    problems.append(f"{cell_id}: its record's history names {len(bad)} digest(s) that are not "
                                    f"digests (first: {str(bad[0])[:40]!r}); their reports are not read")
                digests += [str(d) for d in entries if _is_digest(d)]
        reports: dict[str, Mapping[str, Any]] = {}
        for digest in dict.fromkeys(digests):
            report = _read(lambda: source.smoke_report(digest), f"{cell_id}: the smoke report of {digest[:19]}",
                           problems)
            if report is not None:
                reports[digest] = report
        evidence[cell_id] = CellEvidence(record=record, latest=latest, reports=reports, problems=tuple(problems))
    return evidence


class WatchSource(Protocol):
    def watch_tags(self) -> list[str]: ...
    def watch_record(self, tag: str) -> Mapping[str, Any] | None: ...


def collect_watch(source: WatchSource, limit: int | None = None) -> WatchEvidence:
    """Every watch decision the registry holds, up to `limit` records (MAX_WATCH_RECORDS); one
    problem line per record that cannot be read, and one when records were left unread."""
    limit = MAX_WATCH_RECORDS if limit is None else limit
    problems: list[str] = []
    tags = source.watch_tags()
    if len(tags) > limit:
        problems.append(f"{len(tags)} watch records in the registry; the board read {limit} of them")
    records = []
    for tag in tags[:limit]:
        record = _read(lambda: source.watch_record(tag), f"watch record {tag[:60]}", problems)
        if record is not None:
            records.append((tag, record))
    return WatchEvidence(records=tuple(records), problems=tuple(problems))


MAX_HISTORY = 1000  # history entries of one record whose reports are read
MAX_WATCH_RECORDS = 2000  # two registry requests each; a daily watch of a few cells stays far below
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
T = TypeVar("T")


def _is_digest(value: object) -> bool:
    return isinstance(value, str) and _DIGEST.fullmatch(value) is not None


def _read(get: Callable[[], T | None], what: str, problems: list[str]) -> T | None:
    """What `get` returns; None with a line in `problems` when the registry holds something unreadable
    there (a registry that cannot be reached is not this: ServiceError ends the board, exit 3)."""
    try:
        return get()
    except (StepFailed, InputError, KeyError, TypeError, ValueError, AttributeError, RecursionError) as exc:
        text = " ".join(str(exc).split())[:120]
        problems.append(f"{what} is unreadable ({type(exc).__name__}{': ' + text if text else ''})")
        return None


class StoreSource:
    """A RecordSource over the registry: the records repository and the images' repository."""

    def __init__(self, client: RegistryClient, repository: str):
        self.client = client
        self.repository = repository
        self.store = RecordStore(client, repository)
        self._tags: list[str] | None = None

    def known_good(self, cell_id: str) -> Mapping[str, Any] | None:
        record = self.store.get_known_good(cell_id)
        return record.to_dict() if record is not None else None

    def smoke_report(self, digest: str) -> Mapping[str, Any] | None:
        report = self.store.get_smoke_report(digest)
        return report.to_dict() if report is not None else None  # the stored JSON form the board reads

    def newest_image(self, cell_id: str) -> BuiltImage | None:
        if self._tags is None:  # one tag listing tells which cells have images at all
            self._tags = self.client.tags(self.repository)
        pattern = immutable_tag_pattern(cell_id)
        if not any(pattern.match(tag) for tag in self._tags):
            return None
        try:
            tag, digest = newest_image(self.client, self.repository, cell_id)
        except StepFailed:  # the image went away between the two listings
            return None
        return BuiltImage(digest=digest, tag=tag)

    def watch_tags(self) -> list[str]:
        return self.store.watch_tags()

    def watch_record(self, tag: str) -> Mapping[str, Any] | None:
        return self.store.get_watch(tag)

"""Gathering a board's evidence from the registry: the only module of the board that reads anything.

`StoreSource` reads through the promotion stage's RecordStore (known-good records, smoke reports
by digest) and `newest_image` (the newest immutable image of a cell); `collect_evidence` asks it,
per cell, for what the board shows. Tests hand `collect_evidence` any other `RecordSource`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from builder.board.model import BuiltImage, CellEvidence
from builder.errors import StepFailed
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
        record = source.known_good(cell_id)
        latest = source.newest_image(cell_id)
        digests = [latest.digest] if latest else []
        if record is not None:
            digests.append(str(record["digest"]))
            if history_reports:
                digests += [str(h["digest"]) for h in record.get("history") or []]
        reports: dict[str, Mapping[str, Any]] = {}
        for digest in dict.fromkeys(digests):
            report = source.smoke_report(digest)
            if report is not None:
                reports[digest] = report
        evidence[cell_id] = CellEvidence(record=record, latest=latest, reports=reports)
    return evidence


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

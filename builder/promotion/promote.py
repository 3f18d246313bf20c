"""Promotion: point a cell's friendly tag at a tested image and record it as known-good.

The friendly tag `<repository>:<cell id>` only ever names an image whose smoke report passed. It is
moved by copying the manifest bytes (same digest; no layer is pulled or pushed). Two promotions of
one cell on one machine are serialised by a file lock; across machines the registry decides (the
last tag PUT wins) and every promoter re-reads the tag and makes the record agree with it.
With a signing key (an Attestor), the tag moves only after the image's SBOM, provenance and passing
smoke verdict are signed and attached to its digest; without one, promotion says it is unsigned.
"""

from __future__ import annotations

import fcntl
import hashlib
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal

from builder.attest.attach import Attestor
from builder.errors import InputError, StepFailed
from builder.names import (
    CELL_LABEL,
    CONTENT_HASH_LABEL,
    ENGINE_LABEL,
    ENGINE_VERSION_LABEL,
    immutable_tag,
    label_patches,
)
from builder.oci.registry import RegistryClient
from builder.promotion.records import HISTORY_LIMIT, KnownGoodRecord, check_digest
from builder.promotion.store import RecordStore
from builder.proof.report import SmokeReport
from builder.util import cache_dir, utc_now

PromotionStatus = Literal["promoted", "already promoted", "lost race"]
_SETTLE_ROUNDS = 4  # re-read rounds before giving up on agreement
_RACE_GRACE = 1.0  # seconds a race loser leaves the winner to write its own record
LOCK_TIMEOUT = 300.0
UNSIGNED = ("UNSIGNED: no signing key (BUILDER_SIGNING_KEY_FILE or BUILDER_SIGNING_KEY), so no signed SBOM, "
            "provenance or smoke attestation; `builder keys create` makes one")


@dataclass(frozen=True)
class PromotionResult:
    cell: str
    digest: str  # where the friendly tag and the record point now
    previous: str | None  # the cell's known-good digest before this promotion
    friendly: str  # registry/repository:cell
    status: PromotionStatus
    record: KnownGoodRecord
    lost_race_to: str | None = None
    attestations: str = UNSIGNED  # what the signing did, one line

    @property
    def message(self) -> str:
        if self.status == "lost race":
            return f"{self.friendly}: lost the race to {self.lost_race_to} (promoted by another runner; left as is)"
        was = f" (was {self.previous})" if self.previous and self.status == "promoted" else ""
        return f"{self.friendly}: {self.status} {self.digest}{was}; {self.attestations}"


def lock_path(host: str, repository: str, cell_id: str, lock_dir: Path | None = None) -> Path:
    root = lock_dir or cache_dir() / "locks"
    key = hashlib.sha256(f"{host}/{repository}:{cell_id}".encode()).hexdigest()[:16]
    return Path(root) / f"promote-{re.sub(r'[^A-Za-z0-9._-]', '_', cell_id)}-{key}.lock"


@contextmanager
def cell_lock(path: Path, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """An exclusive flock on path; the kernel drops it if this process dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StepFailed(f"another promotion has held {path} for over {timeout:.0f} s") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def promote(client: RegistryClient, repository: str, cell_id: str, digest: str, *,
            immutable_tag: str = "", content_hash: str = "", engine: str = "", engine_version: str = "",
            source: str = "", patches: Iterable[tuple[str, str]] = (), golden: dict[str, str] | None = None,
            throughput_tps: float | None = None, promoted_at: str | None = None,
            lock_dir: Path | None = None, attestor: Attestor | None = None) -> PromotionResult:
    """Promote digest to `<repository>:<cell_id>`. Empty record fields come from the image's labels
    (org.llmfactory.*) and its smoke report (summary, golden, throughput_tps). With an attestor, the
    digest's signed attestations are attached first (any failure raises before the tag moves)."""
    check_digest(digest)
    store = RecordStore(client, repository)
    report = _passing_report(store, digest)
    if report is None:
        raise StepFailed(f"{digest} has no passing smoke report: run builder smoke first")
    labels = _checked_labels(client, repository, cell_id, digest)
    signed = attestor.ensure(client, repository, digest, report).message if attestor else UNSIGNED
    fields = {"immutable_tag": immutable_tag, "content_hash": content_hash, "engine": engine,
              "engine_version": engine_version, "source": source, "patches": tuple(patches),
              "golden": golden, "throughput_tps": throughput_tps}
    ours = _record(client.host, repository, cell_id, digest, labels, report, fields, promoted_at or utc_now())
    friendly = f"{client.host}/{repository}:{cell_id}"
    with cell_lock(lock_path(client.host, repository, cell_id, lock_dir)):
        previous = store.get_known_good(cell_id)
        before = previous.digest if previous else None
        tag = client.head_manifest(repository, cell_id)
        if tag and tag.digest == digest and previous and previous.digest == digest:
            was = previous.history[0].digest if previous.history else None
            # Re-tested: the tag stays; the record takes the newest smoke results (summary, golden,
            # throughput) so later runs compare with what was measured last.
            refreshed = replace(previous, smoke_summary=ours.smoke_summary, golden=ours.golden or previous.golden,
                                throughput_tps=ours.throughput_tps if ours.throughput_tps is not None
                                else previous.throughput_tps, sweep=ours.sweep or previous.sweep,
                                golden_profiles=ours.golden_profiles or previous.golden_profiles,
                                golden_scores=ours.golden_scores or previous.golden_scores)
            if refreshed != previous:
                store.put_known_good(refreshed)
            return PromotionResult(cell_id, digest, was, friendly, "already promoted", refreshed, attestations=signed)
        body, media_type, _ = client.get_manifest(repository, digest)
        client.put_manifest(repository, cell_id, body, media_type)
        record = _with_history(ours, previous)
        store.put_known_good(record)
        result = _settle(client, store, repository, cell_id, record, previous, (body, media_type), friendly, before)
        return replace(result, attestations=signed)


def _settle(client: RegistryClient, store: RecordStore, repository: str, cell_id: str, record: KnownGoodRecord,
            previous: KnownGoodRecord | None, manifest: tuple[bytes, str], friendly: str,
            before: str | None) -> PromotionResult:
    """Re-read tag and record until they agree; the tag decides who won."""
    waited = False
    for _ in range(_SETTLE_ROUNDS):
        tag = client.head_manifest(repository, cell_id)
        now = tag.digest if tag else None
        current = store.get_known_good(cell_id)
        if now == record.digest:
            if current and current.digest == record.digest:
                return PromotionResult(cell_id, record.digest, before, friendly, "promoted", current)
            store.put_known_good(record)  # a racer's record landed after ours, but the tag is ours
            continue
        winner_report = _passing_report(store, now) if now else None
        if now is None or winner_report is None:  # tag gone or on an untested image: never leave it there
            client.put_manifest(repository, cell_id, *manifest)
            continue
        if current and current.digest == now:
            return PromotionResult(cell_id, now, before, friendly, "lost race", current, lost_race_to=now)
        if not waited:  # the winner fixes the record itself when it is still running
            waited = True
            time.sleep(_RACE_GRACE)
            continue
        if previous and previous.digest == now:
            store.put_known_good(previous)  # the winner's own record, read before we overwrote it
        else:
            labels = client.image_labels(repository, now)
            store.put_known_good(_with_history(
                _record(client.host, repository, cell_id, now, labels, winner_report, {}, utc_now()), previous))
    raise StepFailed(f"{friendly}: the friendly tag and the known-good record still disagree after "
                     f"{_SETTLE_ROUNDS} re-reads: another promotion of this cell is running; re-run it")


def _passing_report(store: RecordStore, digest: str) -> SmokeReport | None:
    report = store.get_smoke_report(digest)
    return report if report is not None and report.passed else None


def _checked_labels(client: RegistryClient, repository: str, cell_id: str, digest: str) -> dict[str, str]:
    if client.head_manifest(repository, digest) is None:
        raise StepFailed(f"{digest} is not in {client.host}/{repository}: push it (builder build) first")
    labels = client.image_labels(repository, digest)
    labelled = labels.get(CELL_LABEL)
    if labelled != cell_id:
        what = f"labelled for cell {labelled}" if labelled else f"has no {CELL_LABEL} label"
        raise InputError(f"image {digest} {what}, not {cell_id}: promote an image built for {cell_id}")
    return labels


def _record(host: str, repository: str, cell_id: str, digest: str, labels: dict[str, str],
            report: SmokeReport, fields: dict[str, Any], promoted_at: str) -> KnownGoodRecord:
    content_hash = fields.get("content_hash") or labels.get(CONTENT_HASH_LABEL, "")
    summary = report.summary
    golden = fields.get("golden")
    tps = fields.get("throughput_tps")
    tps = tps if tps is not None else report.throughput_tps
    return KnownGoodRecord(
        cell=cell_id, digest=digest, image=f"{host}/{repository}@{digest}",
        immutable_tag=fields.get("immutable_tag") or (immutable_tag(cell_id, content_hash) if content_hash else ""),
        content_hash=content_hash, promoted_at=promoted_at,
        engine=fields.get("engine") or labels.get(ENGINE_LABEL, ""),
        engine_version=fields.get("engine_version") or labels.get(ENGINE_VERSION_LABEL, ""),
        source=fields.get("source") or labels.get("org.opencontainers.image.source", ""),
        patches=tuple(fields.get("patches") or label_patches(labels)), smoke_summary=summary,
        golden=dict(golden if golden is not None else report.golden),
        throughput_tps=float(tps) if tps is not None else None,
        sweep=report.sweep.to_dict() if report.sweep else None, golden_profiles=dict(report.golden_profiles),
        golden_scores={prompt: score.to_dict() for prompt, score in report.golden_scores.items()},
    )


def _with_history(record: KnownGoodRecord, previous: KnownGoodRecord | None) -> KnownGoodRecord:
    if previous is None:
        return record
    if previous.digest == record.digest:  # re-promotion: the same history
        return replace(record, history=previous.history)
    return replace(record, history=((previous.entry(),) + previous.history)[:HISTORY_LIMIT])

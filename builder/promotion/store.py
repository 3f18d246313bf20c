"""Known-good records and smoke reports, kept in the registry itself as small OCI artifacts.

The registry is the source of truth: every runner reads it with its registry credentials alone, no
shared disk. Layout, in the repository `<repository>-records` of the same registry:
  tag `<cell id>`          the cell's known-good record (KnownGoodRecord JSON)
  tag `smoke-<64 hex>`     the smoke report of one image digest (sha256)
  tag `bisect-<cell>-<16 hex>`  a `builder bisect` answer for the cell (key: endpoints and settings)
  tag `watch-<engine>-<16 hex>`  a `builder watch` decision about one upstream release
Each is an OCI manifest with the empty config and one JSON layer (artifactType says which), so
`oras pull`, `crane manifest` or `skopeo inspect` can read them too.
"""

from __future__ import annotations

import json

from builder.errors import StepFailed
from builder.names import CELL_LABEL, CREATED_LABEL, DIGEST_ANNOTATION, PASSED_ANNOTATION, immutable_tag_pattern
from builder.oci.registry import OCI_MANIFEST, RegistryClient
from builder.oci.transport import RegistryNotFound
from builder.promotion.records import (
    BISECT_PREFIX,
    BISECT_TYPE,
    EMPTY_CONFIG,
    EMPTY_TYPE,
    RECORD_TYPE,
    SMOKE_PREFIX,
    SMOKE_TYPE,
    WATCH_PREFIX,
    WATCH_TYPE,
    KnownGoodRecord,
    _canonical,
    bisect_tag,
    check_digest,
    records_repository,
    smoke_tag,
)
from builder.proof.report import SmokeReport


class RecordStore:
    def __init__(self, client: RegistryClient, repository: str):
        self.client = client
        self.repository = repository  # the images' repository
        self.repo = records_repository(repository)

    def __repr__(self) -> str:
        return f"RecordStore({self.client.host}/{self.repo})"

    # -- smoke reports -------------------------------------------------------------------------
    def put_smoke_report(self, digest: str, report: SmokeReport) -> str:
        annotations = {DIGEST_ANNOTATION: check_digest(digest),
                       PASSED_ANNOTATION: "true" if report.passed else "false"}
        return self._push(smoke_tag(digest), _canonical(report.to_dict()), SMOKE_TYPE, annotations)

    def get_smoke_report(self, digest: str) -> SmokeReport | None:
        payload = self._read(smoke_tag(digest), SMOKE_TYPE)
        if payload is None:
            return None
        try:
            report = json.loads(payload)
        except ValueError:
            report = None
        try:
            if not isinstance(report, dict):
                raise ValueError("not an object")
            return SmokeReport.from_dict(report)
        except (ValueError, TypeError, AttributeError):
            raise StepFailed(f"{self.client.host}/{self.repo}:{smoke_tag(digest)} is not a JSON smoke report") from None

    # -- bisect answers ------------------------------------------------------------------------
    def put_bisect(self, cell: str, key: str, result: dict) -> str:
        """Store a bisect's JSON answer as `bisect-<cell>-<key>`; returns that tag."""
        tag = bisect_tag(cell, key)
        self._push(tag, _canonical(result), BISECT_TYPE, {CELL_LABEL: cell})
        return tag

    def get_bisect(self, cell: str, key: str) -> dict | None:
        payload = self._read(bisect_tag(cell, key), BISECT_TYPE)
        if payload is None:
            return None
        try:
            data = json.loads(payload)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise StepFailed(f"{self.client.host}/{self.repo}:{bisect_tag(cell, key)} is not a JSON bisect answer")
        return data

    # -- watch decisions -----------------------------------------------------------------------
    def put_watch(self, tag: str, decision: dict) -> str:
        """Store one `builder watch` decision as `watch-...` (builder/watch/state.py names the tag)."""
        if not tag.startswith(WATCH_PREFIX):
            raise ValueError(f"a watch tag starts with {WATCH_PREFIX!r}, got {tag!r}")
        return self._push(tag, _canonical(decision), WATCH_TYPE, {CELL_LABEL: str(decision.get("cell", ""))})

    def get_watch(self, tag: str) -> dict | None:
        payload = self._read(tag, WATCH_TYPE)
        try:
            data = json.loads(payload) if payload is not None else None
        except ValueError:
            data = []
        if data is not None and not isinstance(data, dict):
            raise StepFailed(f"{self.client.host}/{self.repo}:{tag} is not a JSON watch decision")
        return data

    def watch_tags(self) -> list[str]:
        return sorted(t for t in self.client.tags(self.repo) if t.startswith(WATCH_PREFIX))

    # -- known-good records -------------------------------------------------------------------
    def put_known_good(self, record: KnownGoodRecord) -> str:
        annotations = {CELL_LABEL: record.cell, DIGEST_ANNOTATION: record.digest,
                       "org.opencontainers.image.created": record.promoted_at}
        return self._push(record.cell, record.to_json().encode(), RECORD_TYPE, annotations)

    def get_known_good(self, cell: str) -> KnownGoodRecord | None:
        payload = self._read(cell, RECORD_TYPE)
        if payload is None:
            return None
        try:
            return KnownGoodRecord.from_json(payload)
        except ValueError as exc:
            raise StepFailed(f"{self.client.host}/{self.repo}:{cell} is not a known-good record ({exc})") from None

    def list_known_good(self) -> list[KnownGoodRecord]:
        cells = sorted(t for t in self.client.tags(self.repo) if not t.startswith((SMOKE_PREFIX, BISECT_PREFIX, WATCH_PREFIX)))
        return [r for r in (self.get_known_good(c) for c in cells) if r is not None]

    # -- the artifact format ------------------------------------------------------------------
    def _push(self, tag: str, payload: bytes, artifact_type: str, annotations: dict[str, str]) -> str:
        config = self.client.push_blob(self.repo, EMPTY_CONFIG)
        layer = self.client.push_blob(self.repo, payload)
        manifest = {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
            "config": {"mediaType": EMPTY_TYPE, "digest": config, "size": len(EMPTY_CONFIG)},
            "layers": [{"mediaType": artifact_type, "digest": layer, "size": len(payload),
                        "annotations": {"org.opencontainers.image.title": f"{tag}.json"}}],
            "annotations": annotations,
        }
        return self.client.put_manifest(self.repo, tag, _canonical(manifest), OCI_MANIFEST)

    def _read(self, tag: str, artifact_type: str) -> bytes | None:
        try:
            body, _, _ = self.client.get_manifest(self.repo, tag)
        except RegistryNotFound:
            return None
        manifest = json.loads(body)
        layers = manifest.get("layers") or []
        kind = manifest.get("artifactType") or (layers[0].get("mediaType") if layers else None)
        if kind != artifact_type or not layers:
            raise StepFailed(f"{self.client.host}/{self.repo}:{tag} is a {kind or 'plain image'}, "
                             f"not a {artifact_type}")
        return self.client.get_blob(self.repo, layers[0]["digest"])


def newest_image(client: RegistryClient, repository: str, cell_id: str) -> tuple[str, str]:
    """(tag, digest) of the most recently created immutable image of a cell in the registry."""
    pattern = immutable_tag_pattern(cell_id)
    found = []
    for tag in client.tags(repository):
        if pattern.match(tag):
            created = client.image_labels(repository, tag).get(CREATED_LABEL, "")
            found.append((created, tag))
    if not found:
        raise StepFailed(f"no image of {cell_id} in {client.host}/{repository}: run `builder build --cell {cell_id}`")
    tag = max(found)[1]
    info = client.head_manifest(repository, tag)
    if info is None:  # deleted between the tag list and this lookup
        raise StepFailed(f"{client.host}/{repository}:{tag} vanished while it was being read; run the command again")
    return tag, info.digest


def newest_tested_digest(client: RegistryClient, repository: str, cell_id: str) -> str:
    """The digest of the newest immutable image of a cell whose smoke report passed."""
    store = RecordStore(client, repository)
    pattern = immutable_tag_pattern(cell_id)
    candidates = []
    for tag in client.tags(repository):
        if not pattern.match(tag):
            continue
        info = client.head_manifest(repository, tag)
        report = store.get_smoke_report(info.digest) if info else None
        if info is not None and report is not None and report.passed:
            candidates.append((report.finished_at, info.digest))
    if not candidates:
        raise StepFailed(f"no image of {cell_id} in {client.host}/{repository} has a passing smoke report: "
                         f"run `builder smoke --cell {cell_id}` first")
    return max(candidates)[1]

"""`builder promote` and `builder known-good`: the registry's record of tested images."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

import typer

from .errors import InputError, StepFailed
from .knowngood import KnownGoodRecord, RecordStore, lock_file
from .names import CELL_LABEL, immutable_tag_pattern
from .promote import promote
from .registry import RegistryClient
from .table import print_table

known_good_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                             help="Read the known-good records kept in the registry.")


def _client(names) -> RegistryClient:
    client = RegistryClient.from_environment(names.registry)
    client.ping()
    return client


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
        if report and report.get("passed") is True:
            candidates.append((str(report.get("finished_at", "")), info.digest))
    if not candidates:
        raise StepFailed(f"no image of {cell_id} in {client.host}/{repository} has a passing smoke report: "
                         f"run `builder smoke --cell {cell_id}` first")
    return max(candidates)[1]


def promote_cmd(session, target: str) -> None:
    client = _client(session.names)
    repository = session.names.repository
    if re.fullmatch(r"sha256:[0-9a-f]{64}", target):
        digest = target
        cell_id = client.image_labels(repository, digest).get(CELL_LABEL)
        if not cell_id:
            raise InputError(f"{target}: the image carries no {CELL_LABEL} label; promote it by cell id")
    else:
        known = {c.id for c in session.expansion.cells}
        if target not in known:
            raise InputError(f"'{target}' is neither a cell of the matrix nor a sha256:<64 hex> digest "
                             "(see `builder matrix`)")
        cell_id, digest = target, newest_tested_digest(client, repository, target)
    result = promote(client, repository, cell_id, digest)
    typer.echo(result.message)


def _store(session) -> RecordStore:
    return RecordStore(_client(session.names), session.names.repository)


def list_records(session, as_json: bool) -> None:
    records = _store(session).list_known_good()
    if as_json:
        typer.echo(json.dumps([json.loads(r.to_json()) for r in records], indent=2))
        return
    print_table(["cell", "digest", "promoted", "version", "decode tok/s", "earlier"],
                [[r.cell, r.digest[:19], r.promoted_at, r.engine_version,
                  f"{r.throughput_tps:.1f}" if r.throughput_tps else "-", str(len(r.history))] for r in records])
    typer.echo(f"{len(records)} known-good cell(s) in {session.names.repo}")


def show_record(session, cell_id: str, as_json: bool) -> KnownGoodRecord:
    record = _store(session).get_known_good(cell_id)
    if record is None:
        raise StepFailed(f"{cell_id} has no known-good record in {session.names.repo}")
    if as_json:
        typer.echo(record.to_json())
        return record
    typer.echo(f"cell:      {record.cell}\nimage:     {record.image}\npromoted:  {record.promoted_at}\n"
               f"engine:    {record.engine} {record.engine_version} ({record.source})\n"
               f"patches:   {', '.join(p for p, _ in record.patches) or 'none'}\n"
               f"decode:    {record.throughput_tps or '-'} tok/s\nsmoke:     {json.dumps(record.smoke_summary)}")
    for entry in record.history:
        typer.echo(f"earlier:   {entry.digest} promoted {entry.promoted_at} ({entry.throughput_tps or '-'} tok/s)")
    return record


def export_lock(session, out: Optional[Path]) -> None:
    text = lock_file(_store(session).list_known_good())
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text)
        typer.echo(f"wrote {out}", err=True)

"""`builder promote` and `builder known-good`: the registry's record of tested images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from builder import grammar
from builder.attest.attach import configured_attestor, for_cell
from builder.cli.options import MatrixOpt, RegistryOpt, path_option, writable_file
from builder.cli.session import Session
from builder.errors import InputError, StepFailed
from builder.names import CELL_LABEL, DIGEST_PATTERN
from builder.oci.registry import RegistryClient
from builder.promotion.promote import promote
from builder.promotion.records import KnownGoodRecord, lock_file
from builder.promotion.store import RecordStore, newest_tested_digest
from builder.table import print_table

known_good_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                             help="Read the known-good records kept in the registry.")


def _client(names) -> RegistryClient:
    client = RegistryClient.from_environment(names.registry)
    client.ping()
    return client


def promote_command(
    target: str = typer.Argument(..., help="A cell id (its newest image with a passing smoke report) or sha256:<digest>."),
    matrix: Path = MatrixOpt, registry: Optional[str] = RegistryOpt,
):
    """Point the cell's friendly tag at a tested digest (manifest copy inside the registry: no
    rebuild, no layer moved) and record it as known-good. Untested digests are refused. With a
    signing key (BUILDER_SIGNING_KEY_FILE or BUILDER_SIGNING_KEY) the image's SBOM, provenance and
    smoke verdict are signed and attached to its digest first.

    Example: builder promote vllm-0.32.0-cpu
    """
    promote_cmd(Session(matrix, None, None, None, None, registry), target)


def promote_cmd(session, target: str) -> None:
    # The argument is checked before the registry is contacted: a typo is exit 2, not "unreachable".
    is_digest = DIGEST_PATTERN.fullmatch(target) is not None
    if not is_digest:
        if target.startswith("sha256:"):
            raise InputError(f"TARGET: '{target[:80]}' is not a digest: sha256: and 64 lower-case hex digits")
        if target not in {c.id for c in session.expansion.cells}:
            raise InputError(f"TARGET: '{target[:80]}' is neither a cell of the matrix nor a sha256:<64 hex> digest "
                             "(see `builder matrix`)")
    attestor = configured_attestor()  # a bad key is exit 2 before the registry is contacted
    client = _client(session.names)
    repository = session.names.repository
    if is_digest:
        digest = target
        cell_id = client.image_labels(repository, digest).get(CELL_LABEL)
        if not cell_id:
            raise InputError(f"{target}: the image carries no {CELL_LABEL} label; promote it by cell id")
    else:
        cell_id, digest = target, newest_tested_digest(client, repository, target)
    cells = {c.id: c for c in session.expansion.cells}
    if attestor is not None and cell_id in cells:
        attestor = for_cell(attestor, cells[cell_id], session.job(cells[cell_id]).patches)
    result = promote(client, repository, cell_id, digest, attestor=attestor)
    typer.echo(result.message)


def _store(session) -> RecordStore:
    return RecordStore(_client(session.names), session.names.repository)


@known_good_app.command("list")
def known_good_list(matrix: Path = MatrixOpt, registry: Optional[str] = RegistryOpt,
                    as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """List every cell's known-good image. Example: builder known-good list"""
    list_records(Session(matrix, None, None, None, None, registry), as_json)


def list_records(session, as_json: bool) -> None:
    records = _store(session).list_known_good()
    if as_json:
        typer.echo(json.dumps([json.loads(r.to_json()) for r in records], indent=2))
        return
    print_table(["cell", "digest", "promoted", "version", "decode tok/s", "earlier"],
                [[r.cell, r.digest[:19], r.promoted_at, r.engine_version,
                  f"{r.throughput_tps:.1f}" if r.throughput_tps else "-", str(len(r.history))] for r in records])
    typer.echo(f"{len(records)} known-good cell(s) in {session.names.repo}")


@known_good_app.command("show")
def known_good_show(cell_id: str = typer.Argument(..., help="The cell id."), matrix: Path = MatrixOpt,
                    registry: Optional[str] = RegistryOpt, as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """Show one cell's record: digest, patches, smoke summary, throughput history.
    Example: builder known-good show vllm-0.32.0-cpu"""
    show_record(Session(matrix, None, None, None, None, registry), cell_id, as_json)


def show_record(session, cell_id: str, as_json: bool) -> KnownGoodRecord:
    problem = grammar.tag(cell_id)
    if problem:
        raise InputError(f"CELL_ID: {problem}")
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


@known_good_app.command("export")
def known_good_export(matrix: Path = MatrixOpt, registry: Optional[str] = RegistryOpt,
                      out: Optional[Path] = path_option(None, "--out", help="Write the lock file here (default: stdout).")):
    """Write a lock file (cell -> image@sha256) to commit to deployment repos.
    Example: builder known-good export --out images.lock.yaml"""
    export_lock(Session(matrix, None, None, None, None, registry), out)


def export_lock(session, out: Optional[Path]) -> None:
    if out is not None:
        writable_file(out, "--out")
    text = lock_file(_store(session).list_known_good())
    if out is None:
        typer.echo(text, nl=False)
    else:
        try:
            out.write_text(text)
        except OSError as exc:
            raise InputError(f"--out: cannot write {out}: {exc.strerror or exc}") from None
        typer.echo(f"wrote {out}", err=True)

"""`builder patches check` (the command; the checking lives in builder/patching/)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from builder import grammar
from builder.cli.options import MatrixOpt, existing_dir, path_option
from builder.errors import InputError
from builder.matrix.load import load_matrix
from builder.patching.records import load_patches
from builder.shipped import patch_roots

patches_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Check patch records against real upstream sources.")


@patches_app.command("check")
def patches_check_cmd(
    engine: Optional[str] = typer.Option(None, "--engine", help="The engine whose patches to check (default: the one engine whose version labels name every --versions entry, else the one engine with patch records)."),
    versions: str = typer.Option(..., "--versions", help="Comma-separated engine versions, e.g. 0.19.1,0.20.2."),
    arch: Optional[str] = typer.Option(None, "--arch", help="Judge for this arch only (others: not applicable)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    matrix: Path = MatrixOpt,
    patches_dir: Optional[Path] = path_option(None, "--patches", help="Patch records directory (default: patches/ beside the matrix, then the shipped records)."),
):
    """Judge every patch against the real source of each version: applies, already upstream,
    not applicable, or CONFLICT (with the file and the failing hunk). Exits 1 on a conflict.

    Example: builder patches check --engine vllm --versions 0.14.0,0.16.0,0.19.1,0.20.2,0.33.0 --arch sm_121a
    """
    from builder.patching.report import (
        check_versions,
        format_verdicts,
        has_conflict,
        source_ref_for,
        verdicts_json,
    )
    from builder.patching.sources import SourceCache
    loaded = load_matrix(matrix)
    wanted = [v.strip() for v in versions.split(",") if v.strip()]
    roots = (existing_dir(patches_dir, "--patches"),) if patches_dir else patch_roots(loaded.directory)
    if engine is None:
        engine = _engine_of(loaded, wanted, roots)
    if engine not in loaded.engines:
        raise InputError(f"--engine: unknown engine '{engine}' (the matrix defines: {', '.join(loaded.engines)})")
    if arch is not None and arch not in loaded.archs:
        raise InputError(f"--arch: unknown arch '{arch}' (the matrix defines: {', '.join(loaded.archs)})")
    if not wanted:
        raise InputError(f"--versions: {versions!r} names no version (e.g. --versions 0.19.1,0.20.2)")
    for version in wanted:
        if version in loaded.engines[engine].versions:  # a matrix label (llama.cpp: b11312)
            continue
        if grammar.version(version):
            raise InputError(f"--versions: '{version[:60]}' is neither a version label of engines.{engine}.versions "
                             "nor a PEP 440 version (e.g. 0.20.2)")
    records = load_patches(roots, engine)
    cache = SourceCache()  # checks BUILDER_CACHE and BUILDER_PYPI_URL before anything is fetched
    if not records:  # nothing to judge; still fetch and verify each source, so the pins are proven
        for version in wanted:
            archive = cache.fetch(source_ref_for(loaded, engine, version))
            typer.echo(f"{engine} {version}: source {archive.ref.describe()} verified (sha256 {archive.sha256})",
                       err=True)
        typer.echo(f"no {engine} patch records under {', '.join(map(str, roots))}: the factory ships none for "
                   f"{engine}, nothing to judge")
        return
    verdicts = check_versions(loaded, records, engine, wanted, arch, cache,
                              progress=lambda m: typer.echo(m, err=True))
    typer.echo(verdicts_json(verdicts) if as_json else format_verdicts(verdicts))
    if has_conflict(verdicts):
        raise typer.Exit(1)


def _engine_of(loaded, wanted: list[str], roots) -> str:
    """The engine --versions means: the one whose version labels hold them all, else the one with patch records."""
    labelled = [name for name, e in loaded.engines.items() if wanted and all(v in e.versions for v in wanted)]
    patched = sorted({r.engine for r in load_patches(roots)} & set(loaded.engines))
    for found in (labelled, patched):
        if len(found) == 1:
            return found[0]
    raise InputError(f"--engine: name the engine whose patches to check ({', '.join(loaded.engines)}); "
                     f"--versions {','.join(wanted)[:60]} does not tell")

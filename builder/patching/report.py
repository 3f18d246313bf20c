"""`builder patches check`: every patch against the real sources of several engine versions."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict
from pathlib import Path

from packaging.version import Version

from builder.engines import engine_module
from builder.errors import InputError
from builder.matrix.model import Matrix, SourceRef
from builder.patching.check import CONFLICT, Verdict, check_record
from builder.patching.records import PatchRecord
from builder.patching.sources import SourceCache
from builder.table import format_table


def source_ref_for(matrix: Matrix, engine: str, version: str) -> SourceRef:
    """The matrix's pinned source for a version when it has one, else the PyPI sdist."""
    spec = matrix.engines[engine]
    if version in spec.versions:
        return spec.versions[version].source
    return SourceRef("pypi", name=spec.pypi, version=version)


def triton_for(matrix: Matrix, engine: str, version: str, tree) -> str | None:
    """Triton from the torch the source pins (the real source wins over matrix data)."""
    torch = engine_module(engine).torch_pin(tree) if tree is not None else None
    if torch is None and version in matrix.engines[engine].versions:
        torch = matrix.engines[engine].versions[version].torch
    return matrix.torch_triton.get(torch) if torch else None


def check_versions(matrix: Matrix, records: list[PatchRecord], engine: str, versions: list[str],
                   arch: str | None, cache: SourceCache, progress=lambda message: None) -> list[Verdict]:
    verdicts: list[Verdict] = []
    gates: dict[str, Version] = {}
    refs = [source_ref_for(matrix, engine, version) for version in versions]
    for ref in refs:  # a local tree that is not there is bad input: said before any sdist is fetched
        if ref.kind == "path" and not Path(ref.path or "").expanduser().is_dir():
            where = f"{ref.where}: " if ref.where else ""
            raise InputError(f"{where}source path '{ref.path}' is not a directory; nothing was fetched")
    for version in versions:
        progress(f"fetching {engine} {version} source")
        archive = cache.fetch(source_ref_for(matrix, engine, version))
        tree = cache.extract(archive)
        triton = triton_for(matrix, engine, version, tree)
        gate = gating_version(matrix, engine, version)
        for record in records:
            verdict = check_record(record, tree, gate, arch, None, triton)
            gates[version] = gate
            verdicts.append(dataclasses.replace(verdict, version=version))  # the label the user gave
    order = {r.id: n for n, r in enumerate(records)}
    return sorted(verdicts, key=lambda v: (order[v.patch_id], gates[v.version]))


def gating_version(matrix: Matrix, engine: str, version: str) -> Version:
    """What applies_to is judged on: a matrix label's version (llama.cpp b11312 -> 11312), else the text."""
    spec = matrix.engines[engine]
    return spec.versions[version].version if version in spec.versions else Version(version)


def format_verdicts(verdicts: list[Verdict]) -> str:
    rows = [[v.patch_id, v.version, v.verdict, v.detail] for v in verdicts]
    return format_table(["patch", "version", "verdict", "why"], rows)


def verdicts_json(verdicts: list[Verdict]) -> str:
    return json.dumps([asdict(v) for v in verdicts], indent=2)


def has_conflict(verdicts: list[Verdict]) -> bool:
    return any(v.verdict == CONFLICT for v in verdicts)

"""`builder audit IMAGE|WHEEL|DIR --arch A`: the kernel audit on its own, before anything is built."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from builder.cli.options import MatrixOpt, RegistryOpt, registry_override
from builder.engines import engine_module
from builder.errors import InputError


def audit_command(
    target: str = typer.Argument(..., help="A directory (e.g. an installed site-packages/vllm), a wheel file, "
                                           "or an image (local Docker engine, or pulled from a registry)."),
    arch: str = typer.Option(..., "--arch", help="The GPU arch to audit for, e.g. sm_90 or sm_121a."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    engine: Optional[str] = typer.Option(None, "--engine", help="The engine module: which packages of an image to read, "
                                        "which old-GPU-only kernels it declares (default: the image's engine label, "
                                        "or the engine whose package the directory or wheel is)."),
    optional: Optional[list[str]] = typer.Option(None, "--optional", help="Glob on a library's path that may "
                                                 "lack the arch (reported, not failed); repeatable."),
    matrix: Path = MatrixOpt, registry: Optional[str] = RegistryOpt,
):
    """Can every CUDA kernel in TARGET run on --arch? cuobjdump reads each shared library; a kernel
    whose only code is for another arch of the family (sm_120a on sm_121a) or plain SASS of an older
    generation without PTX (sm_80 on sm_90) fails it. A directory or wheel needs neither Docker nor
    network. Exit 0 pass, 1 audit failed, 2 bad input, 3 registry or Docker Engine unreachable.

    Example: builder audit /usr/lib/python3/dist-packages/vllm --arch sm_90 --json
    """
    from builder.audit import targets as audit

    try:
        module = engine_module(engine) if engine is not None else None
    except InputError as exc:
        raise InputError(f"--engine: {exc}") from None
    matrix_archs, matrix_registry = _matrix_facts(matrix)
    audit.check_arch(arch, matrix_archs)
    registry = registry_override(registry)  # checked (and named) before Docker or a registry is asked
    found = audit.classify(target)
    globs = tuple(optional or ())
    if found.kind in (audit.DIR, audit.WHEEL):
        module = module or audit.engine_of_files(found)  # None: no engine's declarations apply
        run = audit.audit_dir if found.kind == audit.DIR else audit.audit_wheel
        report = run(Path(found.ref), arch, module, globs)
    else:
        from builder.oci import dockerd
        client = dockerd.connect()
        audit.ensure_local(client, found.ref, registry or matrix_registry)
        module = module or audit.engine_of_image(client.images.get(found.ref).labels or {})
        if module is None:
            raise InputError(f"--engine: {found.ref} has no engine label the factory knows; name its engine "
                             f"with --engine ({_known()})")
        report = audit.audit_image(client, found.ref, arch, module, globs)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        typer.echo(report.summary())
        for lib in report.libraries:
            typer.echo(f"  {lib.verdict:4} {lib.describe()}")
        for warning in report.warnings:
            typer.echo(f"  warning {warning}")
    if not report.ok:
        raise typer.Exit(1)


def _known() -> str:
    from builder.engines import ENGINES
    return ", ".join(sorted(ENGINES))


def _matrix_facts(path: Path) -> tuple[tuple[str, ...] | None, str | None]:
    """The matrix's GPU archs and registry; (None, None) without a matrix file (any GPU arch goes)."""
    if not path.is_file():
        return None, None
    from builder.matrix.load import load_matrix
    loaded = load_matrix(path)
    return tuple(name for name, a in loaded.archs.items() if a.compute_capability), loaded.registry

"""Options shared by the commands that select cells (declared once, with their env vars)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from builder.errors import InputError

MatrixOpt = typer.Option(Path(os.environ.get("BUILDER_MATRIX", "matrix.yaml")), "--matrix",
                         help="The matrix file (env BUILDER_MATRIX).")
ArchOpt = typer.Option(None, "--arch", help="Only these archs (repeat or comma-separate), e.g. sm_121a.")
CudaOpt = typer.Option(None, "--cuda", help="Only these CUDA releases, e.g. 13.0.")
EngineOpt = typer.Option(None, "--engine", help="Engine with an optional version specifier, e.g. 'vllm==0.20.2'.")
CellOpt = typer.Option(None, "--cell", help="Cell ids or globs, e.g. 'vllm-0.20.2-*'.")
RegistryOpt = typer.Option(None, "--registry", help="Registry host[:port] (env BUILDER_REGISTRY; default from matrix.yaml).")


def existing_dir(path: Optional[Path], option: str) -> Optional[Path]:
    if path is not None and not path.is_dir():
        raise InputError(f"{option}: '{path}' is not a directory")
    return path


def existing_file(path: Optional[Path], option: str) -> Optional[Path]:
    if path is not None and not path.is_file():
        raise InputError(f"{option}: '{path}' is not a readable file")
    return path

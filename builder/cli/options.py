"""Options shared by the commands that select cells (declared once, with their env vars), and the
checks every command runs on its paths before it reads, writes or contacts anything."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, overload

import typer

from builder import grammar
from builder.errors import InputError


def _nonempty_path(value: str) -> Path:
    """Path options: an empty string would silently mean '.', the working directory."""
    if not str(value).strip():
        raise typer.BadParameter("an empty path names nothing (it would mean the working directory)")
    problem = grammar.one_line(str(value))
    if problem:
        raise typer.BadParameter(problem)
    return Path(value)


MatrixOpt = typer.Option("matrix.yaml", "--matrix", envvar="BUILDER_MATRIX", parser=_nonempty_path,
                         help="The matrix file (env BUILDER_MATRIX).")
ArchOpt = typer.Option(None, "--arch", help="Only these archs (repeat or comma-separate), e.g. sm_121a.")
CudaOpt = typer.Option(None, "--cuda", help="Only these CUDA releases, e.g. 13.0.")
EngineOpt = typer.Option(None, "--engine", help="Engine with an optional version specifier, e.g. 'vllm==0.20.2'.")
CellOpt = typer.Option(None, "--cell", help="Cell ids or globs, e.g. 'vllm-0.20.2-*'.")
RegistryOpt = typer.Option(None, "--registry", help="Registry host[:port] (env BUILDER_REGISTRY; default from matrix.yaml).")


def path_option(default, *names: str, **kwargs):
    """A path option whose empty value is a usage error instead of the working directory."""
    return typer.Option(default, *names, parser=_nonempty_path, **kwargs)


@overload
def existing_dir(path: Path, option: str) -> Path: ...


@overload
def existing_dir(path: None, option: str) -> None: ...


def existing_dir(path: Optional[Path], option: str) -> Optional[Path]:
    if path is not None and not path.is_dir():
        raise InputError(f"{option}: '{path}' is not a directory")
    return path


@overload
def existing_file(path: Path, option: str) -> Path: ...


@overload
def existing_file(path: None, option: str) -> None: ...


def existing_file(path: Optional[Path], option: str) -> Optional[Path]:
    if path is not None and not path.is_file():
        raise InputError(f"{option}: '{path}' is not a readable file")
    return path


def wheel_dir(path: Optional[Path], option: str) -> Optional[Path]:
    """A --find-links directory whose wheels are all readable regular files (a broken link or a
    FIFO would fail, or hang, the content hash later)."""
    existing_dir(path, option)
    for wheel in sorted(path.glob("*.whl")) if path is not None else []:
        if not wheel.is_file():
            raise InputError(f"{option}: '{wheel}' is not a readable file (a broken link?)")
    return path


def writable_dir(path: Path, option: str) -> Path:
    """A directory that exists or can be made: neither it nor a parent may be a file."""
    for candidate in (path, *path.absolute().parents):
        if candidate.exists() or candidate.is_symlink():
            if not candidate.is_dir():
                what = "is" if candidate == path else f"is under '{candidate}', which is"
                raise InputError(f"{option}: '{path}' {what} not a directory")
            if not os.access(candidate, os.W_OK | os.X_OK):
                raise InputError(f"{option}: '{candidate}' is not writable")
            return path
    return path


def writable_file(path: Path, option: str) -> Path:
    """A file path whose directory exists and which is not a directory itself."""
    if path.is_dir():
        raise InputError(f"{option}: '{path}' is a directory; give a file name")
    parent = path.absolute().parent
    if not parent.is_dir():
        raise InputError(f"{option}: the directory '{path.parent}' does not exist")
    if path.exists() and not path.is_file():
        raise InputError(f"{option}: '{path}' is not a regular file")
    return path


def registry_override(value: Optional[str]) -> Optional[str]:
    """--registry, else BUILDER_REGISTRY (set but empty counts as unset), checked and named."""
    if value is not None:
        where = "--registry"
    else:
        value = os.environ.get("BUILDER_REGISTRY") or None
        where = "BUILDER_REGISTRY"
    if value is None:
        return None
    problem = grammar.registry(value)
    if problem:
        raise InputError(f"{where}: {problem}")
    return value

"""What the package ships: the default Dockerfile templates and the patch records (package data).

A user's tree beside its matrix.yaml may add to them or override them: `dockerfiles/<path>` there
wins over the shipped template of the same path, and a record `patches/<engine>/<id>/` there wins
over the shipped record of the same id. So a plain `pip install` works with a matrix anywhere.
"""

from __future__ import annotations

from pathlib import Path

SHIPPED = Path(__file__).resolve().parent
TEMPLATES = SHIPPED / "dockerfiles"
PATCHES = SHIPPED / "patches"


def template_roots(matrix_dir: Path) -> tuple[Path, ...]:
    """Where templates are looked up, first match wins: the user's tree, then the shipped ones."""
    local = matrix_dir / "dockerfiles"
    return (local, TEMPLATES) if local.is_dir() and local.resolve() != TEMPLATES else (TEMPLATES,)


def patch_roots(matrix_dir: Path) -> tuple[Path, ...]:
    """Where patch records are read from; a record in an earlier root overrides the same id later."""
    local = matrix_dir / "patches"
    return (local, PATCHES) if local.is_dir() and local.resolve() != PATCHES else (PATCHES,)

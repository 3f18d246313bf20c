"""Deciding one release (side effects: files): its proposed matrix written and loaded again, so the
pinned entry is one the loader accepts and the candidate cell exists; with --apply, matrix.yaml itself."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from builder.engines import engine_module
from builder.errors import BuilderError
from builder.matrix.cells import expand
from builder.matrix.load import load_matrix

from .loop import Outcome, Target
from .proposal import propose
from .releases import Release


@dataclass(frozen=True, kw_only=True)
class Proposer:
    """evaluate() of the watch when nothing is built: verdict `found`, with the proposal's path."""

    matrix: Path
    out_dir: Path
    apply: bool = False

    def write(self, target: Target, release: Release, pins: Mapping[str, str] | None = None) -> tuple[Path | None, str]:
        """(the proposed matrix, "") or (None, why the release cannot be proposed). `pins`: what the
        release's own file says (a wheel's torch); else the known-good's torch is kept."""
        known = {"torch": target.known_torch} if target.known_torch and release.kind != "image" else {}
        try:
            build_vars = engine_module(release.engine).release_build_vars(release.version, release.pin) \
                if release.kind == "git" else {}
            text = propose(self.matrix.read_text(encoding="utf-8"), release, target.known_label,
                           {**known, **(pins or {})}, build_vars)
        except ValueError as exc:
            return None, f"cannot propose: {exc}"
        name = f"{self.matrix.stem}.{release.engine}-{release.label}.proposed.yaml"
        path = (self.matrix if self.apply else self.out_dir / name)
        trial = self.matrix.parent / f".{name}.check"  # beside matrix.yaml: its relative paths hold
        trial.write_text(text, encoding="utf-8")
        try:
            cells = {c.id for c in expand(load_matrix(trial)).cells}
        except BuilderError as exc:
            return None, f"the proposed entry does not load: {str(exc).splitlines()[0]}"
        finally:
            trial.unlink(missing_ok=True)
        if target.candidate_cell(release.label) not in cells:
            return None, f"the proposed matrix has no cell {target.candidate_cell(release.label)}"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path, ""

    def __call__(self, target: Target, release: Release) -> Outcome:
        path, problem = self.write(target, release)
        if path is None:
            return Outcome(verdict="failing", detail=problem)
        where = f"applied to {path}" if self.apply else str(path)
        return Outcome(verdict="found", detail=f"pinned and proposed ({where}); not built (no --build)",
                       proposal=where)

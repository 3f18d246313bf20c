"""Patch records: versioned, arch-scoped fixes kept as data under patches/<engine>/<id>/.

A record is `patch.yaml` plus its content (a unified diff, a replacement file, or environment
settings). This module loads and validates records and plans which ones a cell gets; it does no
I/O beyond reading the records. Checking against real upstream source lives in patchcheck.py.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from builder import grammar
from builder.errors import ConfigError
from builder.matrix.cells import Cell
from builder.matrix.model import Mode
from builder.matrix.schema import MappingReader
from builder.matrix.yamlsrc import load_yaml_file
from builder.patching.content import _check_diff, _check_text, _content

KINDS = ("diff", "overlay", "env")
# Which build modes each kind serves: a diff edits a source tree, an overlay replaces a file of
# an installed package, env settings go into any image.
PatchKind = Literal["diff", "overlay", "env"]
KIND_MODES: dict[str, tuple[Mode, ...]] = {"diff": ("source",), "overlay": ("wheel", "overlay"), "env": ("source", "wheel", "overlay")}
_ID = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


@dataclass(frozen=True)
class SourcePattern:
    """A regex over one file of the source tree (an upstream-fix detector or a shape guard)."""

    file: str
    pattern: str

    def matches(self, text: str) -> bool:
        return re.search(self.pattern, text, re.MULTILINE) is not None


@dataclass(frozen=True)
class PatchRecord:
    id: str
    engine: str
    description: str
    upstream: str
    applies_to: SpecifierSet
    archs: tuple[str, ...]
    kind: PatchKind
    directory: Path
    content: bytes  # the diff, the replacement file, or the canonical env text: what gets hashed
    diff_file: str | None = None
    target: str | None = None  # overlay: path inside the package tree (e.g. vllm/.../gemma4.py)
    overlay_file: str | None = None
    derived_from_sha256: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    when_triton: SpecifierSet | None = None
    upstream_fix: SourcePattern | None = None
    requires: SourcePattern | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def modes(self) -> tuple[str, ...]:
        return KIND_MODES[self.kind]


def load_patch(path: Path) -> PatchRecord:
    """Load one patches/<engine>/<id>/patch.yaml; errors name the file and line.

    Every file a record names resolves inside the record's own directory: relative, no '..', no
    symlink out, a regular file; a diff must parse as a unified diff of relative paths, an overlay
    must be text. A record cannot pull a host file (a runner's Docker config.json, say) into a build
    context and from there into a pushed image."""
    data = load_yaml_file(path)
    src = str(path)
    r = MappingReader(data, src, 1, "patch")
    pid = r.string("id", required=True)
    if not _ID.match(pid):
        raise r.error("id", f"patch id '{pid}' must be lower-case letters, digits, '.', '-', '_'")
    if pid != path.parent.name:
        raise r.error("id", f"patch id '{pid}' must match its directory name '{path.parent.name}'")
    kind = r.string("kind", required=True)
    if kind not in KINDS:
        raise r.error("kind", f"unknown patch kind '{kind}' (kinds: {', '.join(KINDS)})")
    applies_to = r.specifier("applies_to")
    if applies_to is None:
        raise r.error(None, "patch is missing the required key 'applies_to' (a version specifier, e.g. \">=0.19,<0.21\")")
    archs = r.strings("archs", required=True, nonempty=True, check=_arch_name)
    fields: dict[str, Any] = dict(  # PatchRecord's keywords, by kind
        id=pid, engine=r.string("engine", required=True, check=_engine_name),
        description=r.string("description", required=True),
        upstream=r.string("upstream", required=True), applies_to=applies_to,
        archs=archs, kind=kind, directory=path.parent,
        upstream_fix=_pattern(r, "upstream_fix"), requires=_pattern(r, "requires"),
    )
    if kind == "diff":
        fields["diff_file"] = r.string("diff", required=True, check=grammar.relative_path)
        fields["content"] = _content(r, "diff", fields["diff_file"], _check_diff)
    elif kind == "overlay":
        fields["target"] = r.string("target", required=True, check=grammar.relative_path)
        fields["overlay_file"] = r.string("file", required=True, check=grammar.relative_path)
        sha = r.string("derived_from_sha256", required=True)
        if not re.match(r"^[0-9a-f]{64}$", sha):
            raise r.error("derived_from_sha256", "derived_from_sha256 must be 64 lower-case hex digits")
        fields["derived_from_sha256"] = sha
        fields["content"] = _content(r, "file", fields["overlay_file"], _check_text)
    else:
        env = r.string_map("env", check_key=grammar.env_name)
        if not env:
            raise r.error("env" if r.has("env") else None, "an env patch needs a non-empty 'env' mapping")
        fields["env"] = env
        fields["when_triton"] = r.specifier("when_triton")
        fields["content"] = "".join(f"{k}={v}\n" for k, v in sorted(env.items())).encode()
    r.finish()
    return PatchRecord(**fields)


def _arch_name(value: str) -> str | None:
    return None if grammar.ARCH_NAME.fullmatch(value) else f"'{value[:40]}' is not an arch name (sm_NN[a|f] or cpu)"


def _engine_name(value: str) -> str | None:
    return None if grammar.ENGINE_NAME.fullmatch(value) else f"'{value[:40]}' is not an engine name"


def _pattern(r: MappingReader, key: str) -> SourcePattern | None:
    sub = r.sub(key)
    if sub is None:
        return None
    result = SourcePattern(sub.string("file", required=True, check=grammar.relative_path),
                           sub.string("pattern", required=True, multiline=True))
    try:
        re.compile(result.pattern)
    except re.error as exc:
        raise sub.error("pattern", f"{sub.what}.pattern is not a valid regex: {exc}") from None
    sub.finish()
    return result


def load_patches(root: Path | tuple[Path, ...], engine: str | None = None) -> list[PatchRecord]:
    """All records under the roots (patches/<engine>/<id>/patch.yaml), sorted by id. With several
    roots (a user's tree, then the shipped records), a record of an earlier root overrides the same
    id in a later one; within one root an id may appear once."""
    roots = (root,) if isinstance(root, (str, Path)) else tuple(root)
    merged: dict[str, PatchRecord] = {}
    for one in reversed(roots):
        for record in _load_root(Path(one)):
            merged[record.id] = record
    return sorted((r for r in merged.values() if engine is None or r.engine == engine), key=lambda p: p.id)


def _load_root(root: Path) -> list[PatchRecord]:
    records = []
    ids: dict[str, Path] = {}
    if root.exists() and not root.is_dir():
        raise ConfigError(str(root), None, "is not a directory of patch records")
    for folder in sorted(p for p in root.glob("*/*") if p.is_dir()):
        path = folder / "patch.yaml"
        if not path.exists() and not path.is_symlink():
            near = sorted(p.name for p in folder.iterdir() if p.name.lower().startswith("patch."))
            hint = f" ({', '.join(near)} is not read: name it patch.yaml)" if near else ""
            raise ConfigError(str(folder), None, f"a patch record directory without patch.yaml{hint}")
        record = load_patch(path)
        if record.engine != path.parent.parent.name:
            raise ConfigError(str(path), _line_of(path, "engine"), f"engine '{record.engine}' does not match the "
                              f"directory '{path.parent.parent.name}': keep the record under patches/{record.engine}/")
        if record.id in ids:
            raise ConfigError(str(path), _line_of(path, "id"), f"duplicate patch id '{record.id}' (also {ids[record.id]})")
        ids[record.id] = path
        records.append(record)
    return records


@dataclass(frozen=True)
class Skip:
    """A patch a cell does not get, and why (shown in plans, provenance and labels)."""

    id: str
    reason: str
    verdict: Literal["not applicable", "already upstream"]


@dataclass(frozen=True)
class PatchPlan:
    apply: tuple[PatchRecord, ...]
    skipped: tuple[Skip, ...]
    checked: bool  # True when verdicts came from the real upstream source

    @property
    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for record in self.apply:
            out.update(record.env)
        return out


def static_verdict(record: PatchRecord, engine: str, version: Version, arch: str | None, mode: str | None,
                   triton: str | None) -> str | None:
    """Why a record does not apply, judged from metadata alone; None if it is a candidate.
    arch or mode None means "any" (e.g. `builder patches check` without --arch)."""
    if record.engine != engine:
        return f"for engine {record.engine}"
    if not record.applies_to.contains(version, prereleases=True):
        return f"{engine} {version} is outside applies_to '{record.applies_to}'"
    if arch is not None and arch not in record.archs:
        return f"arch {arch} not targeted (patch is for {', '.join(record.archs)})"
    if mode is not None and mode not in record.modes:
        return f"a {record.kind} patch does not serve {mode} builds"
    if record.when_triton is not None:
        if triton is None:
            return "the cell's Triton version is unknown (set torch for this version in matrix.yaml)"
        if not record.when_triton.contains(triton, prereleases=True):
            return f"Triton {triton} is outside when_triton '{record.when_triton}'"
    return None


def plan_static(records: list[PatchRecord], cell: Cell) -> PatchPlan:
    """The patch plan from metadata only (no upstream source at hand)."""
    apply, skipped = [], []
    for record in records:
        reason = static_verdict(record, cell.engine.name, cell.version, cell.arch.name, cell.mode, cell.triton)
        if reason is None:
            apply.append(record)
        elif record.engine == cell.engine.name:
            skipped.append(Skip(record.id, reason, "not applicable"))
    return PatchPlan(tuple(apply), tuple(skipped), checked=False)


def _line_of(path: Path, key: str) -> int | None:
    """The line of a top-level `key:` in an already loaded (so small and readable) record, for the error."""
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if line.startswith(f"{key}:"):
            return number
    return None

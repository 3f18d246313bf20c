"""Rendering a cell into a self-contained build context (pure: reads templates, writes nothing).

A context is the Dockerfile, the patches to apply, overlay files, the provenance file the image
carries, and optional extra inputs (a local wheel directory, the fetched engine source). Its
content hash names the immutable image tag. `write_context` is the only function that writes.
"""

from __future__ import annotations

from typing import Any

import json
import os
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from builder.bases.choice import BaseChoice
from builder.engines import engine_module
from builder.errors import InputError
from builder.hashing import content_hash
from builder.matrix.cells import Cell
from builder.names import LABEL_PREFIX, immutable_tag, short_hash
from builder.patching.records import PatchPlan
from builder.shipped import TEMPLATES

PROVENANCE_PATH = "/opt/llm-factory/provenance.json"


@dataclass(frozen=True)
class RenderOptions:
    find_links: Path | None = None  # local wheel directory, bind-mounted for pip --find-links
    source_archive: Path | None = None  # the fetched engine source (tar.gz) for source builds
    source_sha256: str | None = None
    base: BaseChoice | None = None  # the resolved base (builds); None renders `FROM <reference>`


@dataclass(frozen=True)
class BuildContext:
    cell: Cell
    plan: PatchPlan
    files: dict[str, bytes]  # rendered files: relative path -> content
    external: dict[str, Path] = field(default_factory=dict)  # copied in when written
    build_args: dict[str, str] = field(default_factory=dict)
    content_hash: str = ""
    base: BaseChoice | None = None

    @property
    def tag_hash(self) -> str:
        return short_hash(self.content_hash)

    @property
    def immutable_tag(self) -> str:
        return immutable_tag(self.cell.id, self.content_hash)

    @property
    def self_contained(self) -> bool:
        return self.cell.mode != "source" or any(p.startswith("source/") for p in self.external)

    @property
    def labels(self) -> dict[str, str]:
        """The labels the rendered Dockerfile sets (build-time labels are added by the build)."""
        return _static_labels(self.cell, self.plan)


def _environment(template_roots: tuple[Path, ...]) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(root) for root in template_roots]),  # first match wins
        undefined=jinja2.StrictUndefined,  # a typo in a template is an error, not an empty string
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["dq"] = _dq
    env.filters["comment"] = _comment
    env.filters["word"] = _word
    env.filters["sh"] = shlex.quote  # one shell word, quoted only when it needs it (a CMake list's ';')
    env.filters["label_block"] = lambda labels: " \\\n      ".join(
        f"{key}={_dq(value)}" for key, value in sorted(labels.items()))
    return env


def _dq(value: object) -> str:
    """A double-quoted Dockerfile string; JSON escaping is what the Dockerfile parser undoes."""
    return json.dumps(str(value))


def _comment(value: object) -> str:
    """Text for a `# ...` comment line: whitespace runs and line breaks become one space, so no
    value can end the comment and start an instruction (loading already refuses control characters)."""
    return " ".join(str(value).split())


_WORD = re.compile(r"[A-Za-z0-9._:/@+=!-]+")


def _word(value: object) -> str:
    """A value spliced bare into an instruction or a quoted shell word (an image reference, a
    version, a package name): it must be one word of safe characters, else rendering stops."""
    text = str(value)
    if not _WORD.fullmatch(text):
        raise InputError(f"refusing to render {text[:60]!r} into a Dockerfile: not a plain word "
                         "(image references, versions and names are checked when matrix.yaml is loaded)")
    return text


_ENVIRONMENTS: dict[tuple[Path, ...], jinja2.Environment] = {}


def _env_for(template_roots: tuple[Path, ...]) -> jinja2.Environment:
    if template_roots not in _ENVIRONMENTS:
        _ENVIRONMENTS[template_roots] = _environment(template_roots)
    return _ENVIRONMENTS[template_roots]


def _template_file(template_roots: tuple[Path, ...], name: str) -> Path:
    for root in template_roots:
        if (root / name).is_file():
            return root / name
    return template_roots[-1] / name


def provenance(cell: Cell, plan: PatchPlan, options: RenderOptions) -> dict[str, Any]:
    record: dict[str, Any] = {
        "cell": cell.id,
        "engine": cell.engine.name,
        "engine_version": cell.engine_version.label,
        "arch": cell.arch.name,
        "platform": cell.platform,
        "cuda": cell.cuda_version,
        "mode": cell.mode,
        "base_image": cell.base_image,
        **({"base_digest": options.base.digest} if options.base else {}),
        "torch": cell.engine_version.torch,
        "triton": cell.triton,
        "patches_checked_against_source": plan.checked,
        "patches_applied": [{"id": p.id, "kind": p.kind, "sha256": p.sha256, "upstream": p.upstream}
                            for p in plan.apply],
        "patches_skipped": [{"id": s.id, "verdict": s.verdict, "reason": s.reason} for s in plan.skipped],
    }
    record["source"] = source_record(cell, options.source_sha256)
    return record


def source_record(cell: Cell, source_sha256: str | None = None) -> dict[str, Any]:
    """The source a cell is built from, as provenance.json names it (`builder verify` compares with it)."""
    source = cell.engine_version.source
    if cell.mode == "source":
        return {"ref": source.describe(), "sha256": source_sha256 or source.sha256, "commit": source.commit or None}
    if cell.mode == "wheel":
        pinned = cell.engine_version.wheel_sha256
        return {"ref": f"pypi:{cell.engine.wheel_package(cell.arch.name)}=={cell.engine_version.label}",
                **({"sha256": pinned} if pinned else {})}
    return {"ref": f"image:{cell.base_image}"}


def _static_labels(cell: Cell, plan: PatchPlan) -> dict[str, str]:
    applied = ",".join(f"{p.id}@sha256:{p.sha256[:12]}" for p in plan.apply)
    skipped = ",".join(f"{s.id}:{s.verdict}" for s in plan.skipped)
    labels = {
        "org.opencontainers.image.title": f"{cell.engine.name} {cell.engine_version.label} for {cell.arch.name}",
        "org.opencontainers.image.version": cell.engine_version.label,
        "org.opencontainers.image.base.name": cell.base_image,
        f"{LABEL_PREFIX}.cell": cell.id,
        f"{LABEL_PREFIX}.arch": cell.arch.name,
        f"{LABEL_PREFIX}.cuda": cell.cuda_version or "none",
        f"{LABEL_PREFIX}.engine": cell.engine.name,
        f"{LABEL_PREFIX}.engine-version": cell.engine_version.label,
        f"{LABEL_PREFIX}.mode": cell.mode,
        f"{LABEL_PREFIX}.patches": applied or "none",
        f"{LABEL_PREFIX}.patches-skipped": skipped or "none",
        f"{LABEL_PREFIX}.provenance": PROVENANCE_PATH,
    }
    return labels


def render_cell(cell: Cell, plan: PatchPlan, options: RenderOptions = RenderOptions(),
                template_roots: tuple[Path, ...] = (TEMPLATES,)) -> BuildContext:
    env = _env_for(tuple(template_roots))
    engine = engine_module(cell.engine.name)
    name = f"{engine.template_dir}/{cell.mode}.Dockerfile.j2"
    try:
        template = env.get_template(name)
    except jinja2.TemplateNotFound:
        raise InputError(f"no template {name} under {', '.join(map(str, template_roots))} for cell {cell.id}: "
                         f"add one to render {cell.engine.name} in {cell.mode} mode") from None
    files: dict[str, bytes] = {}
    external: dict[str, Path] = {}
    overlays = []
    for record in plan.apply:
        if record.kind == "diff":
            files[f"patches/{record.id}.diff"] = record.content
        elif record.kind == "overlay":
            target = record.target or ""  # load_patch requires it for an overlay
            files[f"overlays/{record.id}/{Path(target).name}"] = record.content
            overlays.append({"id": record.id, "target": target,
                             "file": f"{record.id}/{Path(target).name}",
                             "derived_from_sha256": record.derived_from_sha256, "sha256": record.sha256})
    if overlays:
        files["overlays/manifest.json"] = _json(overlays)
        files["overlays/apply-overlays.py"] = _template_file(template_roots, "files/apply-overlays.py").read_bytes()
    source_file = None
    if cell.mode == "source":
        source_file = f"{cell.engine.name}-{cell.engine_version.label}.tar.gz"
        if options.source_archive:
            external[f"source/{source_file}"] = options.source_archive
    if options.find_links:
        for wheel in sorted(Path(options.find_links).glob("*.whl")):
            if not wheel.is_file():  # a broken link or a FIFO would fail (or hang) the hash
                raise InputError(f"--find-links: {wheel} is not a readable file (a broken link?)")
            external[f"wheels/{wheel.name}"] = wheel
    files["wheels/.keep"] = b""  # the bind mount needs the directory even when no wheels are given
    files["provenance.json"] = _json(provenance(cell, plan, options))
    build_args = {"FACTORY_CELL": cell.id}
    if cell.mode == "source":
        build_args.update(MAX_JOBS="", NVCC_THREADS=str(cell.arch.limits.nvcc_threads))
    values = dict(
        cell=cell, arch=cell.arch, cuda=cell.cuda, engine=cell.engine, version=cell.engine_version,
        plan=plan, env=plan.env, diffs=[p for p in plan.apply if p.kind == "diff"], overlays=overlays,
        labels=_static_labels(cell, plan), provenance_path=PROVENANCE_PATH, source_file=source_file,
        wheel_package=cell.engine.wheel_package(cell.arch.name), build_args=build_args,
        cuda_major=int(cell.cuda.version.split(".")[0]) if cell.cuda else None,
        has_find_links=bool(options.find_links), **engine.template_vars(cell),
    )
    base = options.base
    files["Dockerfile"] = _dockerfile(template, values, base.canonical_from if base else cell.base_image)
    # The hash sees the canonical FROM line (reference@digest); a build from the mirror only
    # changes where the same bytes come from, so its Dockerfile is written but not hashed.
    digest = content_hash({**files, **external}, build_args, base.identity if base else cell.base_image,
                          cell.platform)
    if base is not None and base.from_mirror:
        files["Dockerfile"] = _dockerfile(template, values, base.from_text)
    return BuildContext(cell, plan, files, external, build_args, digest, base)


def _dockerfile(template: jinja2.Template, values: dict[str, Any], base_from: str) -> bytes:
    text = template.render(base_from=base_from, **values)
    return re.sub(r"\n{3,}", "\n\n", text).encode()  # templates leave blank runs


def _json(value: object) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()


def write_context(context: BuildContext, out_dir: Path) -> Path:
    """Write the context to out_dir/<cell id>/ (replacing an older render); returns that directory.

    Nothing but the hashed files goes in: the hash is printed by the CLI, not stored in the context."""
    target = Path(out_dir) / context.cell.id
    if target.exists():
        shutil.rmtree(target)
    for name, body in context.files.items():
        path = target / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    for name, source in context.external.items():
        path = target / name
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # wheels and sdists are large: hard-link when on the same filesystem; a symlink in a --find-links
            # directory is resolved first, or the context would hold a link BuildKit cannot follow
            os.link(Path(source).resolve(), path)
        except OSError:
            shutil.copyfile(source, path)
    return target

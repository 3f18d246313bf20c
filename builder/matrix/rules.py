"""include and exclude rules of matrix.yaml: product groups and the cells they leave out, with reasons."""


from __future__ import annotations

from collections.abc import Iterator

from builder import grammar
from builder.matrix.model import (
    MODES,
    Arch,
    CudaRelease,
    Engine,
    Mode,
    ExcludeRule,
    IncludeRule,
)
from builder.matrix.schema import MappingReader


def _check_arch(r: MappingReader, key: str, arch: str, archs: dict[str, Arch]) -> None:
    if arch not in archs:
        raise r.error(key, f"{r.what}.{key}: unknown arch '{arch}' (defined archs: {', '.join(archs)})")


def _rule_readers(top: MappingReader, key: str, what: str, required: bool = False) -> Iterator[MappingReader]:
    """A reader per item of the top-level list `key` (include, exclude), named `key[i]` in errors."""
    items = top.value(key, None if required else [], required=required)
    if not isinstance(items, list):
        raise top.error(key, f"{key} must be {what}")
    for index, item in enumerate(items):
        line = items.line_of(index) if hasattr(items, "line_of") else top.line_of(key)
        yield MappingReader(item, top.source, line, f"{key}[{index}]")


def _load_includes(top: MappingReader, archs: dict[str, Arch], cuda: dict[str, CudaRelease],
                   engines: dict[str, Engine]) -> tuple[IncludeRule, ...]:
    rules = []
    for r in _rule_readers(top, "include", "a list of cell groups", required=True):
        engine_name = r.string("engine", required=True)
        if engine_name not in engines:
            raise r.error("engine", f"{r.what} references undefined engine '{engine_name}' "
                                    f"(defined: {', '.join(engines)})")
        engine = engines[engine_name]
        versions = r.strings("versions", required=True, nonempty=True)
        for label in versions:
            if label not in engine.versions:
                raise r.error("versions", f"{r.what}: engine {engine_name} has no version '{label}' "
                                          f"under engines.{engine_name}.versions")
        arch_names = r.strings("archs", required=True, nonempty=True)
        for arch in arch_names:
            _check_arch(r, "archs", arch, archs)
        cudas = r.strings("cuda", nonempty=True)
        for release in cudas:
            if release not in cuda:
                raise r.error("cuda", f"{r.what}: unknown CUDA release '{release}' "
                                      f"(defined under cuda: {', '.join(cuda)})")
        gpu = [a for a in arch_names if archs[a].gpu]
        if gpu and not cudas:
            raise r.error(None, f"{r.what}: GPU archs ({', '.join(gpu)}) need a cuda list")
        if cudas and len(gpu) < len(arch_names):
            raise r.error("cuda", f"{r.what}: cpu archs take no cuda list; put them in a group of their own")
        mode = _check_mode(r, "mode", r.string("mode"))
        base = r.string("base", check=grammar.image_reference)
        rules.append(IncludeRule(r.line, engine_name, versions, arch_names, cudas or ("",), mode, base))
        r.finish()
    return tuple(rules)


def _load_excludes(top: MappingReader, archs: dict[str, Arch], engines: dict[str, Engine]) -> tuple[ExcludeRule, ...]:
    rules = []
    for r in _rule_readers(top, "exclude", "a list of rules"):
        engine = r.string("engine")
        if engine is not None and engine not in engines:
            raise r.error("engine", f"{r.what} references undefined engine '{engine}'")
        arch_names = r.strings("archs")
        for arch in arch_names:
            _check_arch(r, "archs", arch, archs)
        modes = r.strings("modes")
        for mode in modes:
            _check_mode(r, "modes", mode)
        rule = ExcludeRule(r.line, r.string("reason", required=True), engine, r.specifier("versions"),
                           arch_names, r.specifier("cuda"), modes, r.strings("cells"))
        r.finish()
        rules.append(rule)
    return tuple(rules)


def _check_mode(r: MappingReader, key: str, mode: str | None) -> Mode | None:
    """The mode, checked against the vocabulary (None stays None)."""
    if mode is None:
        return None
    if mode not in MODES:
        raise r.error(key, f"{r.what}.{key}: unknown build mode '{mode}' (modes: {', '.join(MODES)})")
    return mode  # narrowed to Mode by the membership test

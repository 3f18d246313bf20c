"""matrix.yaml -> Matrix: the loader, which validates every field and names `file:line` on error.

Everything per arch, per CUDA release and per engine version is data in matrix.yaml; the code
has no branches on arch names. Loading validates every field and names `file:line` on error.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import cast

from builder import grammar
from builder.engines import ENGINES
from builder.errors import ConfigError
from builder.matrix.model import (
    _CUDA_NAME,
    MODES,
    Mode,
    Arch,
    BaseSettings,
    BuildLimits,
    CudaRelease,
    Engine,
    EngineVersion,
    Matrix,
    PipDefaults,
    SourceRef,
)
from builder.matrix.rules import _check_arch, _check_mode, _load_excludes, _load_includes
from builder.matrix.schema import MappingReader, parse_version
from builder.matrix.smoke_load import load_smoke
from builder.matrix.yamlsrc import LineDict, load_yaml_file


def load_matrix(path: Path | str) -> Matrix:
    path = Path(path)
    data = load_yaml_file(path)
    src = str(path)
    top = MappingReader(data, src, 1, "matrix")
    schema = top.integer("schema", 1, minimum=1)
    if schema != 1:
        raise top.error("schema", f"schema {schema} is not supported by this builder (expected 1)")
    registry = top.string("registry", "127.0.0.1:5000", check=grammar.registry)
    repository = top.string("repository", "llm-factory", check=grammar.repository)
    problem = grammar.image_name(registry, repository)
    if problem:
        raise top.error("repository" if top.has("repository") else None, f"repository: {problem}")
    archs = _load_archs(top.sub("archs", required=True))
    cuda = _load_cuda(top.sub("cuda", required=True))
    torch_triton = top.string_map("torch_triton", check_key=grammar.version, check=grammar.version)
    engines = _load_engines(top.sub("engines", required=True), archs)
    includes = _load_includes(top, archs, cuda, engines)
    excludes = _load_excludes(top, archs, engines)
    pip = _load_pip(top.sub("pip"), path.resolve().parent)
    bases = _load_bases(top.sub("bases"), path.resolve().parent)
    top.finish()
    return Matrix(src, registry, repository, archs, cuda, torch_triton, engines, includes, excludes,
                  path.resolve().parent, pip, bases)


def _load_bases(r: MappingReader | None, base: Path) -> BaseSettings:
    if r is None:
        return BaseSettings(base / "bases.lock")
    # the lock stays beside the matrix: `builder bases lock` writes it, so data must not name a host file
    lock = r.string("lock", "bases.lock", check=grammar.relative_path)
    mirror, from_mirror = r.string("mirror", check=grammar.mirror), r.value("from_mirror", False)
    if not isinstance(from_mirror, bool):
        raise r.error("from_mirror", "matrix.bases.from_mirror must be true or false")
    if mirror is not None:
        host, _, repo = mirror.rstrip("/").partition("/")
        if not repo or not ("." in host or ":" in host or host == "localhost"):
            raise r.error("mirror", f"matrix.bases.mirror '{mirror}' must be REGISTRY/REPOSITORY, "
                                    "e.g. 127.0.0.1:5000/llm-factory/bases")
    if from_mirror and not mirror:
        raise r.error("from_mirror", "matrix.bases.from_mirror needs matrix.bases.mirror (REGISTRY/REPOSITORY)")
    r.finish()
    return BaseSettings(base / lock, mirror.rstrip("/") if mirror else None, from_mirror)


def _load_pip(r: MappingReader | None, base: Path) -> PipDefaults:
    if r is None:
        return PipDefaults()
    ca, links = r.string("ca_bundle"), r.string("find_links")
    r.finish()
    return PipDefaults(base / ca if ca else None, base / links if links else None,
                       f"{r.source}:{r.line_of('ca_bundle')}: pip.ca_bundle", f"{r.source}:{r.line_of('find_links')}: pip.find_links")


def _load_archs(reader: MappingReader) -> dict[str, Arch]:
    archs = {}
    for name in reader.data:
        value = reader.raw(name)
        if not isinstance(name, str) or not grammar.ARCH_NAME.fullmatch(name):
            raise reader.error(name, f"arch name '{name}' is not of the form sm_NN[a|f] or cpu")
        r = MappingReader(value, reader.source, reader.line_of(name), f"archs.{name}")
        mode = cast(Mode, _check_mode(r, "default_mode", r.string("default_mode", required=True)))
        min_cuda = r.string("min_cuda")
        limits = r.sub("build")
        arch_list = functools.partial(_matches, grammar.ARCH_LIST, "a CUDA arch list like \"12.1a\" or \"8.0;9.0a\"")
        arch = Arch(
            name=name,
            platform=r.string("platform", required=True),
            default_mode=mode,
            compute_capability=r.string("compute_capability", check=functools.partial(
                _matches, grammar.COMPUTE_CAPABILITY, "a compute capability like \"12.1\"")),
            torch_cuda_arch_list=r.string("torch_cuda_arch_list", check=arch_list),
            flashinfer_cuda_arch_list=r.string("flashinfer_cuda_arch_list", check=arch_list),
            cmake_cuda_architectures=r.string("cmake_cuda_architectures", check=functools.partial(
                _matches, _CMAKE_CUDA_ARCHS, "a CMake CUDA_ARCHITECTURES list like \"121a-real\" or \"90a-real;120a\"")),
            min_cuda=parse_version(min_cuda, r.source, r.line_of("min_cuda"), f"archs.{name}.min_cuda")
            if min_cuda else None,
            bases=_bases(r),
            runs_on=r.strings("runs_on", check=_runner_label),
            limits=_limits(limits) if limits else BuildLimits(),
            min_cuda_line=r.line_of("min_cuda"),
        )
        if arch.gpu and not arch.torch_cuda_arch_list:
            raise r.error(None, f"archs.{name} has a compute_capability but no torch_cuda_arch_list")
        if not re.match(r"^linux/(amd64|arm64)$", arch.platform):
            raise r.error("platform", f"archs.{name}.platform '{arch.platform}' must be linux/amd64 or linux/arm64")
        r.finish()
        archs[name] = arch
    return archs


def _limits(r: MappingReader) -> BuildLimits:
    limits = BuildLimits(
        mem_per_job_gib=r.integer("mem_per_job_gib", BuildLimits.mem_per_job_gib, minimum=1),
        max_jobs=r.integer("max_jobs", BuildLimits.max_jobs, minimum=1),
        nvcc_threads=r.integer("nvcc_threads", BuildLimits.nvcc_threads, minimum=1),
    )
    r.finish()
    return limits


def _bases(r: MappingReader) -> dict[str, str]:
    bases = r.string_map("bases", check=grammar.image_reference)
    for mode in bases:
        if mode not in MODES:
            raise ConfigError(r.source, r.line_of("bases"), f"{r.what}.bases: unknown mode '{mode}' "
                                                            f"(modes: {', '.join(MODES)})")
    return bases




def _load_cuda(reader: MappingReader) -> dict[str, CudaRelease]:
    releases = {}
    for version in reader.data:
        if not isinstance(version, str) or not _CUDA_NAME.match(version):
            raise reader.error(version, f"CUDA release {version!r} must be a quoted string like \"13.0\"")
        r = MappingReader(reader.raw(version), reader.source, reader.line_of(version), f"cuda.{version}")
        releases[version] = CudaRelease(version, _bases(r))
        r.finish()
    return releases


def _load_engines(reader: MappingReader, archs: dict[str, Arch]) -> dict[str, Engine]:
    engines = {}
    for name in reader.data:
        if not isinstance(name, str) or not grammar.ENGINE_NAME.fullmatch(name) or len(name) > 64:
            raise reader.error(name, f"engine name {str(name)[:70]!r} must be 1-64 lower-case letters, digits, "
                                     "'.', '_', '-' (it is part of cell ids, image tags and directory names)")
        if name not in ENGINES:  # everything engine-specific lives in its module: a name without one can do nothing
            raise reader.error(name, f"no engine module for '{name}' (the factory knows: {', '.join(sorted(ENGINES))}; "
                                     "an engine is added as a module in builder/engines/)")
        r = MappingReader(reader.raw(name), reader.source, reader.line_of(name), f"engines.{name}")
        pypi = r.string("pypi", name, check=grammar.distribution)
        git = r.string("git", check=grammar.url)
        wheel_packages = r.string_map("wheel_packages", check=grammar.distribution)
        for arch in wheel_packages:
            _check_arch(r, "wheel_packages", arch, archs)
        smoke, per_arch = load_smoke(r.sub("smoke"), archs)
        default_modes: dict[str, Mode] = {}
        for arch, mode in r.string_map("default_modes").items():
            _check_arch(r, "default_modes", arch, archs)
            if mode not in MODES:
                raise r.error("default_modes", f"{r.what}.default_modes.{arch}: unknown build mode '{mode}' "
                                               f"(modes: {', '.join(MODES)})")
            default_modes[arch] = mode
        versions_reader = r.sub("versions", required=True)
        versions = {}
        for label in versions_reader.data:
            if not isinstance(label, str) or not grammar.VERSION_LABEL.fullmatch(label):
                raise versions_reader.error(label, f"engine version {str(label)[:70]!r} must be a quoted string "
                                                   "of letters, digits, '.', '-', '_' (e.g. \"0.20.2\"; a label is "
                                                   "part of image tags, which cannot hold '+': set version: for that)")
            versions[label] = _load_version(versions_reader, label, pypi, git, archs)
        r.finish()
        engines[name] = Engine(name, pypi, git, wheel_packages, versions, smoke, per_arch, default_modes)
    return engines


def _load_version(parent: MappingReader, label: str, pypi: str, git: str | None,
                  archs: dict[str, Arch]) -> EngineVersion:
    value = parent.raw(label)
    r = MappingReader(LineDict() if value is None else value, parent.source, parent.line_of(label),
                      f"{parent.what}.{label}")
    r.line = parent.line_of(label) if value is None else r.line
    version_text = r.string("version", label)
    where = f"{r.source}:{r.line}"
    version = parse_version(version_text, r.source, r.line_of("version"), f"{r.what}.version")
    commit = r.string("git_commit")
    path = r.string("path")
    if commit and path:
        raise r.error("path", f"{r.what}: give either git_commit or path, not both")
    if commit:
        if not re.match(r"^[0-9a-f]{40}$", commit):  # git cannot fetch an abbreviated id
            raise r.error("git_commit", f"{r.what}.git_commit must be the full 40-hex commit id, got '{commit}'")
        url = r.string("git_url", git, check=grammar.url)
        if not url:
            raise r.error("git_commit", f"{r.what}: git_commit needs git_url here or engines.*.git")
        source = SourceRef("git", url=url, commit=commit, where=where)
    elif path:
        source = SourceRef("path", path=path, where=where)
    else:
        sha = r.string("sdist_sha256")
        if sha and not re.match(r"^[0-9a-f]{64}$", sha):
            raise r.error("sdist_sha256", f"{r.what}.sdist_sha256 must be 64 hex digits")
        # pypi_version: the sdist's own version when the label and version name something else
        # (llama.cpp: label b11312 and version 11312, the build number; the sdist is llama-cpp-python 0.3.36).
        source = SourceRef("pypi", name=pypi, version=r.string("pypi_version", version_text, check=grammar.version),
                           sha256=sha, where=where)
    images = r.string_map("images", check=grammar.image_reference)
    for arch in images:
        _check_arch(r, "images", arch, archs)
    build_vars = r.string_map("build_vars", check_key=functools.partial(_matches, _BUILD_VAR_KEY, "lower_snake_case"),
                              check=functools.partial(_matches, _BUILD_VAR, "a build variable value (letters, "
                                                      "digits, '.', '_', '+', '-'; at most 64)"))
    wheel_sha = r.string("wheel_sha256")
    if wheel_sha and not re.match(r"^[0-9a-f]{64}$", wheel_sha):
        raise r.error("wheel_sha256", f"{r.what}.wheel_sha256 must be 64 hex digits")
    result = EngineVersion(label, version, source, r.string("torch", check=grammar.version), images, build_vars,
                           wheel_sha256=wheel_sha)
    r.finish()
    return result


_CMAKE_CUDA_ARCHS = re.compile(r"\d{2,3}[af]?(-real|-virtual)?(;\d{2,3}[af]?(-real|-virtual)?)*")
_BUILD_VAR = re.compile(r"[A-Za-z0-9._+-]{1,64}")  # spliced into a template's RUN line: no shell syntax
_BUILD_VAR_KEY = re.compile(r"[a-z][a-z0-9_]{0,40}")


def _matches(pattern: re.Pattern[str], what: str, value: str) -> str | None:
    return None if pattern.fullmatch(value) else f"{value[:60]!r} is not {what}"


def _runner_label(value: str) -> str | None:
    return None if re.fullmatch(r"[A-Za-z0-9_.:+-]+", value) else \
        f"{value[:60]!r} is not a runner label (letters, digits, '.', '_', ':', '+', '-')"



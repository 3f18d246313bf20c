"""The build matrix's typed model: archs, CUDA releases, engines, versions and include/exclude rules.

Everything per arch, per CUDA release and per engine version is data in matrix.yaml; the code
has no branches on arch names. Loading validates every field and names `file:line` on error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, get_args

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from builder.engines import EngineModule, engine_module
from builder.matrix.smoke_settings import SmokeSettings
from builder.util import redact

Mode = Literal["source", "wheel", "overlay"]
MODES: Final[tuple[Mode, ...]] = get_args(Mode)
_ARCH_NAME = re.compile(r"^(sm_\d+[af]?|cpu)$")
_CUDA_NAME = re.compile(r"^\d+\.\d+$")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


@dataclass(frozen=True)
class BuildLimits:
    """Caps for parallel compilation: a source build OOMs when jobs outgrow memory."""

    mem_per_job_gib: int = 4
    max_jobs: int = 64
    nvcc_threads: int = 2


@dataclass(frozen=True)
class Arch:
    name: str
    platform: str
    default_mode: Mode
    compute_capability: str | None = None
    torch_cuda_arch_list: str | None = None
    flashinfer_cuda_arch_list: str | None = None
    cmake_cuda_architectures: str | None = None  # CMake's CUDA_ARCHITECTURES for CMake-built engines: 121a-real
    min_cuda: Version | None = None
    bases: dict[str, str] = field(default_factory=dict)  # mode -> base image, for archs without CUDA
    runs_on: tuple[str, ...] = ()
    limits: BuildLimits = BuildLimits()
    min_cuda_line: int = 0  # where min_cuda is set, for exclusion reasons

    @property
    def gpu(self) -> bool:
        return self.compute_capability is not None


@dataclass(frozen=True)
class CudaRelease:
    version: str  # "13.0"
    bases: dict[str, str]  # mode -> base image

    @property
    def tag(self) -> str:
        return "cu" + self.version.replace(".", "")


@dataclass(frozen=True)
class SourceRef:
    """Where a `source` build gets the engine: a PyPI sdist, a git commit or a local path."""

    kind: Literal["pypi", "git", "path"]
    name: str = ""  # PyPI project
    version: str = ""
    sha256: str | None = None  # pinned sdist checksum, when known
    url: str = ""  # git URL
    commit: str = ""
    path: str = ""
    where: str = field(default="", compare=False)  # "matrix.yaml:LINE" of the version, for errors

    def describe(self) -> str:
        if self.kind == "pypi":
            pin = f" sha256:{self.sha256}" if self.sha256 else ""
            return f"pypi:{self.name}=={self.version}{pin}"
        if self.kind == "git":
            return f"git:{redact(self.url)}@{self.commit}"
        return f"path:{self.path}"


@dataclass(frozen=True)
class EngineVersion:
    label: str  # used in cell ids: "0.20.2", "nightly-20261120"
    version: Version  # PEP 440, for gating
    source: SourceRef
    torch: str | None = None
    images: dict[str, str] = field(default_factory=dict)  # arch -> upstream image (overlay mode)
    # Facts a template needs that the source cannot tell (llama.cpp: the build number and commit of
    # the tree an sdist vendors); strings, rendered as `version.build_vars.<key>`.
    build_vars: dict[str, str] = field(default_factory=dict)
    # wheel cells: the sha256 of the wheel file pip must install (the build downloads it alone and checks it)
    wheel_sha256: str | None = None


@dataclass(frozen=True)
class Engine:
    name: str
    pypi: str
    git: str | None
    wheel_packages: dict[str, str]  # arch -> PyPI distribution for `wheel` mode
    versions: dict[str, EngineVersion]
    smoke: SmokeSettings = SmokeSettings()
    smoke_per_arch: dict[str, SmokeSettings] = field(default_factory=dict)
    # arch -> this engine's default build mode there (llama.cpp has no wheel: source on cpu and sm_90,
    # where the arch's default_mode says wheel); a cell id names its mode only when it is not this.
    default_modes: dict[str, Mode] = field(default_factory=dict)

    def default_mode(self, arch: Arch) -> Mode:
        return self.default_modes.get(arch.name, arch.default_mode)

    def wheel_package(self, arch: str) -> str:
        return self.wheel_packages.get(arch, self.pypi)

    def smoke_for(self, arch: str) -> SmokeSettings:
        return self.smoke_per_arch.get(arch, self.smoke)

    @property
    def module(self) -> EngineModule:
        """Its engine module (matrix.yaml names only engines that have one: checked at load)."""
        return engine_module(self.name)


@dataclass(frozen=True)
class IncludeRule:
    """One product group of cells: engine x versions x archs x cuda, in one mode."""

    line: int
    engine: str
    versions: tuple[str, ...]
    archs: tuple[str, ...]
    cuda: tuple[str, ...]
    mode: Mode | None = None
    base: str | None = None  # overrides the base image of every cell in the group


@dataclass(frozen=True)
class ExcludeRule:
    """Cells matching every given field are excluded with `reason`."""

    line: int
    reason: str
    engine: str | None = None
    versions: SpecifierSet | None = None
    archs: tuple[str, ...] = ()
    cuda: SpecifierSet | None = None
    modes: tuple[str, ...] = ()
    cells: tuple[str, ...] = ()  # cell id globs


@dataclass(frozen=True)
class PipDefaults:
    """Defaults for --ca-bundle and --find-links (corporate proxies, air-gapped runners)."""

    ca_bundle: Path | None = None
    find_links: Path | None = None
    ca_bundle_where: str = ""  # "matrix.yaml:LINE: pip.ca_bundle", for errors about the file
    find_links_where: str = ""


@dataclass(frozen=True)
class BaseSettings:
    """Base images: where the lock lives, the mirror `builder bases mirror` fills, and whether
    builds pull the locked bases from it."""

    lock: Path = Path("bases.lock")
    mirror: str | None = None  # REGISTRY/REPO
    from_mirror: bool = False


@dataclass(frozen=True)
class Matrix:
    path: str
    registry: str
    repository: str
    archs: dict[str, Arch]
    cuda: dict[str, CudaRelease]
    torch_triton: dict[str, str]  # torch release -> the Triton it pins
    engines: dict[str, Engine]
    includes: tuple[IncludeRule, ...]
    excludes: tuple[ExcludeRule, ...]
    directory: Path = Path(".")  # where relative paths in the matrix resolve
    pip: PipDefaults = PipDefaults()
    bases: BaseSettings = BaseSettings()

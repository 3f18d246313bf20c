"""Kernel audit: can the CUDA code in an engine image run on the cell's GPU arch?

cuobjdump lists the SASS cubins and PTX each shared library embeds; `runs_on` applies CUDA's
compatibility model. The failure to catch is silent: arch-specific code (sm_120a) loads on exactly
one compute capability, so sm_120a-only kernels do not run on sm_121a. Libraries mix: the vllm 0.16.0
wheel's _C.abi3.so has sm_120 SASS for most kernels and sm_120a-only SASS for 78 (NVFP4, CUTLASS
sm120), so when a library carries code of the cell's family that does not run on it, the audit reads
kernel names and checks kernel by kernel. Pure core first; subprocess and file-system part at the end.

SASS runs only on its own major generation (on an H200 a kernel with only sm_80 SASS failed at launch
with cudaErrorNoKernelImageForDevice while its neighbour built for sm_90 ran), so a kernel stranded on
the cell is either built for the cell's family without code that runs on it (sm_120a on 12.1), or built
as plain SASS for older generations only, without PTX (sm_80 on 9.0). Kernels built only for newer
GPUs, or only as arch/family-specific code of another generation (sm_90a, sm_100f), are dispatched by
arch and not stranded. Engines also ship old-GPU-only kernels on purpose (vLLM's Turing Marlin
instantiations): the engine module declares them (DispatchOnly, with evidence) and they become a named
warning instead of a failure.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

from builder.engines import DispatchOnly
from builder.errors import InputError

CodeKind = Literal["sass", "ptx"]
SASS: Final[CodeKind] = "sass"
PTX: Final[CodeKind] = "ptx"
Stranding = Literal["same_family", "older_generation"]  # why no code of a kernel runs on the cell
SAME_FAMILY: Final[Stranding] = "same_family"
OLDER_GENERATION: Final[Stranding] = "older_generation"
DEFAULT_PATTERNS = ("**/*.so", "**/*.so.*")
_MAGICS = (b"\x7fELF", b"\x50\xed\x55\xba")  # ELF (libraries, cubins), bare fatbin
_SM = re.compile(r"(?:sm_|compute_)(\d+)(\d)([af]?)")  # the last digit is the minor: sm_121a = 12.1
_CC = re.compile(r"(\d+)\.(\d)([af]?)")  # 12.1a, as in TORCH_CUDA_ARCH_LIST
# `ELF file    1: _C.abi3.1.sm_120a.cubin`, `PTX file    1: k.1.sm_120.ptx` (PTX for compute_120).
_LISTED = re.compile(r"(ELF|PTX) file\s+\d+: .*\.(sm_\d+[af]?)\.(?:cubin|ptx)")
_PTX_ENTRY = re.compile(r"\s*(?:\.visible\s+|\.weak\s+)?\.entry\s+([\w$.]+)")


@dataclass(frozen=True)
class Arch:
    major: int
    minor: int
    suffix: str  # "" plain, "a" arch-specific, "f" family-specific


def parse_arch(name: str) -> Arch:
    match = _SM.fullmatch(name.strip()) or _CC.fullmatch(name.strip())
    if not match:
        raise InputError(f"not a GPU arch: {name!r} (expected e.g. sm_121a, compute_120 or 12.1a)")
    return Arch(int(match[1]), int(match[2]), match[3])


@dataclass(frozen=True)
class DeviceTarget:
    kind: CodeKind  # SASS (a cubin) or PTX
    arch: str  # as cuobjdump names it: sm_120a; compute_120a PTX is listed as sm_120a too

    @property
    def label(self) -> str:
        return self.arch if self.kind == SASS else "compute_" + self.arch.removeprefix("sm_")


@dataclass(frozen=True)
class KernelImage:
    """One cubin or PTX image and the kernels (entry points) it defines."""

    target: DeviceTarget
    kernels: frozenset[str]


def runs_on(target: DeviceTarget, cell_arch: str) -> bool:
    code, gpu = parse_arch(target.arch), parse_arch(cell_arch)  # the cell's own suffix is moot: hardware is X.Y
    if (code.major, code.minor) == (gpu.major, gpu.minor):
        return True
    if code.suffix == "a":
        return False  # arch-specific SASS or PTX: exactly one compute capability (ptxas refuses 120a -> 121a)
    if target.kind == SASS or code.suffix == "f":
        # SASS is binary compatible with later minors of its major; `f` (family) likewise. cuobjdump
        # lists sm_120f cubins as sm_120, which is harmless: both run on the same GPUs.
        return code.major == gpu.major and gpu.minor >= code.minor
    return (gpu.major, gpu.minor) >= (code.major, code.minor)  # plain PTX: the driver JITs it forward


def _misses(target: DeviceTarget, cell_arch: str) -> bool:
    """Code for the cell's GPU family that does not run on the cell: sm_120a on 12.1."""
    return parse_arch(target.arch).major == parse_arch(cell_arch).major and not runs_on(target, cell_arch)


def _older_plain(target: DeviceTarget, cell_arch: str) -> bool:
    """Plain SASS of an older generation (sm_80 on 9.0): portable code, just not to this GPU."""
    code = parse_arch(target.arch)
    return target.kind == SASS and not code.suffix and code.major < parse_arch(cell_arch).major


def stranding(targets: Iterable[DeviceTarget], cell_arch: str) -> Stranding | None:
    """Why a kernel with these images cannot run on the cell, or None when it can or is not meant to."""
    targets = tuple(targets)
    if not targets or any(runs_on(t, cell_arch) for t in targets):
        return None
    if any(_misses(t, cell_arch) for t in targets):
        return SAME_FAMILY
    gpu = parse_arch(cell_arch).major
    if all(parse_arch(t.arch).major < gpu for t in targets) and any(_older_plain(t, cell_arch) for t in targets):
        return OLDER_GENERATION
    return None  # newer-only or arch-specific code of another generation: dispatched by arch


def parse_listing(lines: Iterable[str]) -> tuple[DeviceTarget, ...]:
    """Targets in `cuobjdump --list-elf --list-ptx` output, unique, in order."""
    found: dict[DeviceTarget, None] = {}
    for line in lines:
        match = _LISTED.fullmatch(line.strip())
        if match:
            found[DeviceTarget(SASS if match[1] == "ELF" else PTX, match[2])] = None
    return tuple(found)


def parse_dump(lines: Iterable[str]) -> tuple[KernelImage, ...]:
    """Images in `cuobjdump --dump-elf-symbols` or `--dump-ptx` output: a `Fatbin elf|ptx code:`
    header, then `arch = sm_120f` (the exact suffix), then ENTRY symbols or `.entry` directives."""
    images: list[tuple[DeviceTarget, set[str]]] = []
    header = None
    for line in lines:
        if line.startswith("Fatbin "):
            header = SASS if line.startswith("Fatbin elf") else PTX
        elif header and line.startswith("arch = "):
            images.append((DeviceTarget(header, line[7:].strip()), set()))
            header = None
        elif images and images[-1][0].kind == SASS and line.startswith("FUNC") and " ENTRY " in line:
            images[-1][1].add(line.split()[-1])
        elif images and images[-1][0].kind == PTX and ".entry" in line:
            match = _PTX_ENTRY.match(line)
            if match:
                images[-1][1].add(match[1])
    return tuple(KernelImage(target, frozenset(kernels)) for target, kernels in images)


def needs_kernel_scan(targets: tuple[DeviceTarget, ...], cell_arch: str) -> bool:
    """Some code runs, other code that looks meant for the cell does not (same family, or plain SASS of
    an older generation): only kernel names tell the kernels apart."""
    return (any(runs_on(t, cell_arch) for t in targets)
            and any(_misses(t, cell_arch) or _older_plain(t, cell_arch) for t in targets))


def kernel_targets(images: Iterable[KernelImage]) -> dict[str, frozenset[DeviceTarget]]:
    found: dict[str, set[DeviceTarget]] = {}
    for image in images:
        for kernel in image.kernels:
            found.setdefault(kernel, set()).add(image.target)
    return {kernel: frozenset(targets) for kernel, targets in found.items()}


def stranded(images: Iterable[KernelImage], cell_arch: str) -> dict[str, Stranding]:
    """Every kernel without code that runs on the cell, where it was built for the cell's family or
    as plain SASS of older generations only, with the reason."""
    found = {kernel: stranding(targets, cell_arch) for kernel, targets in kernel_targets(images).items()}
    return {kernel: why for kernel, why in sorted(found.items()) if why}


def stranded_kernels(images: Iterable[KernelImage], cell_arch: str) -> tuple[str, ...]:
    return tuple(stranded(images, cell_arch))


def dispatch_match(targets: Iterable[DeviceTarget], kernel: str,
                   declared: Iterable[DispatchOnly]) -> DispatchOnly | None:
    """The engine's declaration that covers a kernel: its name matches and all its code is for the
    declared archs. Only older-generation kernels are ever excused, never sm_120a on 12.1."""
    targets = tuple(targets)
    for entry in declared:
        if (any(fnmatch.fnmatchcase(kernel, glob) for glob in entry.kernels)
                and all(t.arch in entry.archs for t in targets)):
            return entry
    return None

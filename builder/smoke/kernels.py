"""Kernel audit: can the CUDA code in an engine image run on the cell's GPU arch?

cuobjdump lists the SASS cubins and PTX each shared library embeds; `runs_on` applies CUDA's
compatibility model. The failure to catch is silent: arch-specific code (sm_120a) loads on exactly
one compute capability, so sm_120a-only kernels do not run on sm_121a. Libraries mix: the vllm 0.16.0
wheel's _C.abi3.so has sm_120 SASS for most kernels and sm_120a-only SASS for 78 (NVFP4, CUTLASS
sm120), so when a library carries code of the cell's family that does not run on it, the audit reads
kernel names and checks kernel by kernel. Pure core first; subprocess and file-system part at the end.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

from builder.errors import InputError

CodeKind = Literal["sass", "ptx"]
CheckStatus = Literal["pass", "fail", "skip"]  # shared by smoke checks and library audits
SASS: Final[CodeKind] = "sass"
PTX: Final[CodeKind] = "ptx"
PASS: Final[CheckStatus] = "pass"
FAIL: Final[CheckStatus] = "fail"
SKIP: Final[CheckStatus] = "skip"
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
    """Some code runs, other code of the cell's family does not: only kernel names tell them apart."""
    return any(runs_on(t, cell_arch) for t in targets) and any(_misses(t, cell_arch) for t in targets)


def stranded_kernels(images: Iterable[KernelImage], cell_arch: str) -> tuple[str, ...]:
    """Kernels built for the cell's GPU family (sm_120a on 12.1) with no code that runs on the cell.
    Kernels built only for other generations (sm_90a) are not stranded: engines dispatch by arch."""
    usable, family = set(), set()
    for image in images:
        if runs_on(image.target, cell_arch):
            usable |= image.kernels
        elif _misses(image.target, cell_arch):
            family |= image.kernels
    return tuple(sorted(family - usable))


def _labels(targets: Iterable[DeviceTarget]) -> str:
    return ", ".join(dict.fromkeys(t.label for t in targets))


@dataclass(frozen=True)
class LibraryAudit:
    path: str  # relative to the audited root, e.g. vllm/_C.abi3.so
    verdict: CheckStatus
    detail: str  # reads after the path: "vllm/_C.abi3.so carries sm_120a only; ..."
    targets: tuple[DeviceTarget, ...] = ()
    usable: tuple[DeviceTarget, ...] = ()  # the evidence for a pass
    stranded: tuple[str, ...] = ()

    def describe(self) -> str:
        return f"{self.path} {self.detail}"

    def to_dict(self) -> dict:
        return {"path": self.path, "verdict": self.verdict, "detail": self.detail,
                "targets": [t.label for t in self.targets], "usable": [t.label for t in self.usable],
                "stranded_kernels": len(self.stranded), "stranded_examples": list(self.stranded[:20])}


def judge(path: str, targets: tuple[DeviceTarget, ...], cell_arch: str,
          images: tuple[KernelImage, ...] | None = None, optional: bool = False) -> LibraryAudit:
    """The verdict for one library. `optional`: the engine loads it only on other archs (FA3 on
    Hopper), so a library with nothing for this arch is reported but does not fail the audit."""
    if not targets:
        return LibraryAudit(path, SKIP, "has no device code")
    usable = tuple(t for t in targets if runs_on(t, cell_arch))
    stranded = stranded_kernels(images, cell_arch) if images else ()
    if stranded:
        total = len(set().union(*(i.kernels for i in images)))
        family = _labels(i.target for i in images if _misses(i.target, cell_arch))
        detail = (f"carries {family} only for {len(stranded)} of {total} kernels (e.g. {stranded[0]}); "
                  f"no SASS or PTX usable on {cell_arch}")
    elif not usable:
        detail = f"carries {_labels(targets)} only; no SASS or PTX usable on {cell_arch}"
    elif sass := [t for t in usable if t.kind == SASS]:
        return LibraryAudit(path, PASS, f"runs on {cell_arch}: {_labels(sass)} SASS", targets, usable)
    else:
        return LibraryAudit(path, PASS, f"runs on {cell_arch} via {_labels(usable)} "
                                        "(PTX JIT only: slow first load)", targets, usable)
    if optional:
        return LibraryAudit(path, SKIP, detail + " (optional on this arch)", targets, usable, stranded)
    return LibraryAudit(path, FAIL, detail, targets, usable, stranded)


@dataclass(frozen=True)
class KernelAuditReport:
    cell_arch: str
    root: str
    libraries: tuple[LibraryAudit, ...]

    @property
    def failures(self) -> tuple[str, ...]:
        failed = [lib.describe() for lib in self.libraries if lib.verdict == FAIL]
        if not any(lib.targets for lib in self.libraries):
            failed.append(f"no library with device code under {self.root}: "
                          f"an image for {self.cell_arch} without CUDA kernels is wrong")
        elif not failed and not any(lib.verdict == PASS for lib in self.libraries):
            failed.append(f"no library under {self.root} runs on {self.cell_arch}")
        return tuple(failed)

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        count = {v: sum(lib.verdict == v for lib in self.libraries) for v in (PASS, FAIL, SKIP)}
        head = (f"kernel audit {self.cell_arch}: {'PASS' if self.ok else 'FAIL'} ({count[PASS]} pass, "
                f"{count[FAIL]} fail, {count[SKIP]} skipped)")
        return head if self.ok else f"{head}: {self.failures[0]}"

    def to_dict(self) -> dict:
        return {"cell_arch": self.cell_arch, "root": self.root, "ok": self.ok, "summary": self.summary(),
                "failures": list(self.failures), "libraries": [lib.to_dict() for lib in self.libraries]}

"""Kernel audit verdicts: one LibraryAudit per library (pass, fail, skip, with warnings) from the
rules in kernels.py, and the KernelAuditReport over an audited tree. Pure."""

from __future__ import annotations

from typing import Any

from collections.abc import Iterable
from dataclasses import dataclass

from builder.audit.rules import (
    OLDER_GENERATION,
    SASS,
    DeviceTarget,
    KernelImage,
    Stranding,
    _misses,
    _older_plain,
    dispatch_match,
    kernel_targets,
    runs_on,
    stranded,
)
from builder.checkresult import FAIL, PASS, SKIP, CheckStatus
from builder.engines import DispatchOnly


@dataclass(frozen=True, kw_only=True)
class AuditWarning:
    """Kernels the engine declares old-GPU-only (DispatchOnly): reported, not failed."""

    name: str  # the declaration's name: marlin-sm75
    kernels: tuple[str, ...]
    archs: tuple[str, ...]  # the code they carry
    evidence: str

    def describe(self) -> str:
        return (f"{self.name}: {len(self.kernels)} kernels with {', '.join(self.archs)} SASS only "
                f"(e.g. {self.kernels[0]}); {self.evidence}")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kernels": len(self.kernels), "examples": list(self.kernels[:5]),
                "archs": list(self.archs), "evidence": self.evidence}


def _excuse(images: tuple[KernelImage, ...], found: dict[str, Stranding],
            declared: tuple[DispatchOnly, ...]) -> tuple[dict[str, Stranding], tuple[AuditWarning, ...]]:
    """Split stranded kernels into those that fail and the engine-declared ones that warn."""
    if not declared:
        return found, ()
    targets = kernel_targets(images)
    failing: dict[str, Stranding] = {}
    excused: dict[str, tuple[DispatchOnly, list[str]]] = {}
    for kernel, why in found.items():
        entry = dispatch_match(targets[kernel], kernel, declared) if why == OLDER_GENERATION else None
        if entry is None:
            failing[kernel] = why
        else:
            excused.setdefault(entry.name, (entry, []))[1].append(kernel)
    warnings = tuple(AuditWarning(name=name, kernels=tuple(kernels), evidence=entry.evidence,
                                  archs=tuple(sorted({t.arch for k in kernels for t in targets[k]})))
                     for name, (entry, kernels) in excused.items())
    return failing, warnings


def _labels(targets: Iterable[DeviceTarget]) -> str:
    return ", ".join(dict.fromkeys(t.label for t in targets))


@dataclass(frozen=True, kw_only=True)
class LibraryAudit:
    path: str  # relative to the audited root, e.g. vllm/_C.abi3.so
    verdict: CheckStatus
    detail: str  # reads after the path: "vllm/_C.abi3.so carries sm_120a only; ..."
    targets: tuple[DeviceTarget, ...] = ()
    usable: tuple[DeviceTarget, ...] = ()  # the evidence for a pass
    stranded: tuple[str, ...] = ()  # kernels that fail the library
    reasons: tuple[Stranding, ...] = ()  # why, in the order of `stranded`'s distinct reasons
    warnings: tuple[AuditWarning, ...] = ()

    def describe(self) -> str:
        return f"{self.path} {self.detail}"

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "verdict": self.verdict, "detail": self.detail,
                "targets": [t.label for t in self.targets], "usable": [t.label for t in self.usable],
                "stranded_kernels": len(self.stranded), "stranded_examples": list(self.stranded[:20]),
                "stranded_reasons": list(self.reasons), "warnings": [w.to_dict() for w in self.warnings]}


def judge(path: str, targets: tuple[DeviceTarget, ...], cell_arch: str,
          images: tuple[KernelImage, ...] | None = None, optional: bool = False,
          dispatch_only: tuple[DispatchOnly, ...] = ()) -> LibraryAudit:
    """The verdict for one library. `optional`: the engine loads it only on other archs (FA3 on
    Hopper), so a library with nothing for this arch is reported but does not fail the audit.
    `dispatch_only`: the engine's old-GPU-only kernels, warned about instead of failed."""
    if not targets:
        return LibraryAudit(path=path, verdict=SKIP, detail="has no device code")
    usable = tuple(t for t in targets if runs_on(t, cell_arch))
    found, warnings = _excuse(images, stranded(images, cell_arch), dispatch_only) if images else ({}, ())
    names = tuple(found)
    reasons = tuple(dict.fromkeys(found.values()))
    if found and images:
        total = len(set().union(*(i.kernels for i in images)))
        stale = _labels(i.target for i in images if i.kernels & found.keys() and
                        (_misses(i.target, cell_arch) or _older_plain(i.target, cell_arch)))
        detail = (f"carries {stale} only for {len(found)} of {total} kernels (e.g. {names[0]}); "
                  f"no SASS or PTX usable on {cell_arch}")
    elif not usable:
        detail = f"carries {_labels(targets)} only; no SASS or PTX usable on {cell_arch}"
    else:
        sass = [t for t in usable if t.kind == SASS]
        detail = (f"runs on {cell_arch}: {_labels(sass)} SASS" if sass else
                  f"runs on {cell_arch} via {_labels(usable)} (PTX JIT only: slow first load)")
        if warnings:
            detail += "; warning " + "; ".join(f"{w.name} ({len(w.kernels)} old-GPU-only kernels)" for w in warnings)
        return LibraryAudit(path=path, verdict=PASS, detail=detail, targets=targets, usable=usable, warnings=warnings)
    return LibraryAudit(path=path, verdict=SKIP if optional else FAIL,
                        detail=detail + (" (optional on this arch)" if optional else ""), targets=targets,
                        usable=usable, stranded=names, reasons=reasons, warnings=warnings)


@dataclass(frozen=True, kw_only=True)
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
    def warnings(self) -> tuple[str, ...]:
        return tuple(f"{lib.path} {w.describe()}" for lib in self.libraries for w in lib.warnings)

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        count = {v: sum(lib.verdict == v for lib in self.libraries) for v in (PASS, FAIL, SKIP)}
        warned = f", {len(self.warnings)} warnings" if self.warnings else ""
        head = (f"kernel audit {self.cell_arch}: {'PASS' if self.ok else 'FAIL'} ({count[PASS]} pass, "
                f"{count[FAIL]} fail, {count[SKIP]} skipped{warned})")
        return head if self.ok else f"{head}: {self.failures[0]}"

    def to_dict(self) -> dict[str, Any]:
        return {"cell_arch": self.cell_arch, "root": self.root, "ok": self.ok, "summary": self.summary(),
                "failures": list(self.failures), "warnings": list(self.warnings),
                "libraries": [lib.to_dict() for lib in self.libraries]}

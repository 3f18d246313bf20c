"""Running cuobjdump: the device code each library embeds, streamed and time-bounded; a directory's audit.

cuobjdump lists the SASS cubins and PTX each shared library embeds; `runs_on` applies CUDA's
compatibility model. The failure to catch is silent: arch-specific code (sm_120a) loads on exactly
one compute capability, so sm_120a-only kernels do not run on sm_121a. Libraries mix: the vllm 0.16.0
wheel's _C.abi3.so has sm_120 SASS for most kernels and sm_120a-only SASS for 78 (NVFP4, CUTLASS
sm120), so when a library carries code of the cell's family that does not run on it, the audit reads
kernel names and checks kernel by kernel. Pure core first; subprocess and file-system part at the end.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path, PurePosixPath

from builder.audit.report import KernelAuditReport, LibraryAudit, judge
from builder.audit.rules import (
    _MAGICS,
    DEFAULT_PATTERNS,
    PTX,
    SASS,
    DeviceTarget,
    KernelImage,
    needs_kernel_scan,
    parse_arch,
    parse_dump,
    parse_listing,
    runs_on,
)
from builder.checkresult import FAIL
from builder.engines import DispatchOnly
from builder.errors import InputError, StepFailed

MAX_DEPTH = 64  # directory levels walked (site-packages trees are under 15)
MAX_ENTRIES = 2_000_000  # files and directories walked
STDERR_TAIL = 64 << 10  # bytes of cuobjdump's stderr read back

# --- side effects: finding and running cuobjdump, walking a directory ---

def find_cuobjdump() -> str:
    """cuobjdump from PATH, else from the PyPI wheel (its layout moved between releases:
    nvidia/cuda_cuobjdump/bin in 12.x, nvidia/cu13/bin in 13.x; the wheel's RECORD knows)."""
    found = shutil.which("cuobjdump")
    if found:
        return found
    try:
        dist = importlib.metadata.distribution("nvidia-cuda-cuobjdump")
    except importlib.metadata.PackageNotFoundError:
        dist = None
    for entry in (dist.files or []) if dist else []:
        path = Path(str(dist.locate_file(entry)))  # type: ignore[union-attr]  # dist is set where files are
        if entry.name == "cuobjdump" and os.access(path, os.X_OK):
            return str(path)
    raise StepFailed("cuobjdump not found on PATH nor in the nvidia-cuda-cuobjdump wheel: "
                     "pip install 'llm-image-factory[audit]'")


def _cuobjdump(tool: str, flags: list[str], path: Path, parse: Callable, timeout: float):
    """Stream cuobjdump's stdout through `parse` (a PTX dump can pass 700 MB); kill it at the timeout."""
    killed, argv = threading.Event(), [tool, *flags, str(path)]
    try:
        with tempfile.TemporaryFile() as err, subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err,
                                                               text=True, errors="replace") as proc:
            def kill() -> None:
                killed.set()
                proc.kill()
            timer = threading.Timer(timeout, kill)
            timer.start()
            try:
                assert proc.stdout is not None  # stdout=PIPE
                result = parse(proc.stdout)
                while proc.stdout.read(1 << 20):  # drain what the parser left, a piece at a time
                    pass
                code = proc.wait()
            finally:
                timer.cancel()
            err.seek(0, os.SEEK_END)  # only the end of what it said: the reason is the last line
            err.seek(max(err.tell() - STDERR_TAIL, 0))
            message = err.read(STDERR_TAIL).decode(errors="replace").strip()
    except OSError as exc:
        raise StepFailed(f"cannot run {tool}: {exc}") from exc
    if code == 0 and not killed.is_set():
        return result
    if "does not contain device code" in message:  # exit 255 for a host-only library
        return parse([])
    why = f"timed out after {timeout:.0f} s" if killed.is_set() else (message.splitlines() or [f"exit {code}"])[-1]
    raise StepFailed(f"cuobjdump {' '.join(flags)} {path}: {why}")


def list_targets(cuobjdump: str, path: Path, timeout: float = 300) -> list[DeviceTarget]:
    return list(_cuobjdump(cuobjdump, ["--list-elf", "--list-ptx"], path, parse_listing, timeout))


def dump_kernels(cuobjdump: str, path: Path, with_ptx: bool, timeout: float = 300) -> tuple[KernelImage, ...]:
    """Kernel names per cubin (and per PTX image when PTX could rescue a kernel: the dump is large)."""
    cubins = [i for i in _cuobjdump(cuobjdump, ["--dump-elf-symbols"], path, parse_dump, timeout)
              if i.target.kind == SASS]  # this dump has PTX headers too, without names
    ptx = _cuobjdump(cuobjdump, ["--dump-ptx"], path, parse_dump, timeout) if with_ptx else ()
    return (*cubins, *ptx)


def walk_files(root: Path) -> Iterator[Path]:
    """Every regular file under root, without following symlinks, iteratively (a directory nested
    thousands deep is no RecursionError) and within MAX_DEPTH levels and MAX_ENTRIES entries (InputError)."""
    stack: list[tuple[Path, int]] = [(root, 0)]
    seen = 0
    while stack:
        directory, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise InputError(f"{root}: nested deeper than {MAX_DEPTH} directories ({directory.relative_to(root).parts[0]}/...)")
        try:
            entries = list(os.scandir(directory))
        except OSError as exc:
            raise InputError(f"{directory}: cannot be listed ({exc.strerror or exc})") from None
        for entry in entries:
            seen += 1
            if seen > MAX_ENTRIES:
                raise InputError(f"{root}: more than {MAX_ENTRIES} entries; audit a smaller directory")
            if entry.is_dir(follow_symlinks=False):
                stack.append((Path(entry.path), depth + 1))
            elif entry.is_file(follow_symlinks=False):
                yield Path(entry.path)


def _matches(rel: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatch(rel.rsplit("/", 1)[-1], p[3:]) if p.startswith("**/") else PurePosixPath(rel).match(p)
               for p in patterns)


def _candidates(root: Path, patterns: Iterable[str]) -> list[Path]:
    """Regular files only: symlinks in an exported image point at the image's paths, not ours."""
    patterns = tuple(patterns)
    found = []
    for path in walk_files(root):
        if _matches(path.relative_to(root).as_posix(), patterns):
            with path.open("rb") as handle:
                if handle.read(4) in _MAGICS:  # skip linker scripts named .so
                    found.append(path)
    return sorted(found)


def audit_directory(root: Path, cell_arch: str, patterns: Iterable[str] = DEFAULT_PATTERNS,
                    optional: Iterable[str] = (), cuobjdump: str | None = None, timeout: float = 300,
                    dispatch_only: Iterable[DispatchOnly] = ()) -> KernelAuditReport:
    """Audit every CUDA binary under `root` (an image's exported site-packages) for `cell_arch`.
    `optional`: globs on the relative path of libraries the engine loads only on other archs.
    `dispatch_only`: the engine's declared old-GPU-only kernels (a warning, not a failure)."""
    parse_arch(cell_arch)  # "cpu" is no GPU arch: fail before any work
    tool, optional, dispatch_only = cuobjdump or find_cuobjdump(), tuple(optional), tuple(dispatch_only)
    audits = []
    for path in _candidates(root, patterns):
        rel = path.relative_to(root).as_posix()
        try:
            targets = tuple(list_targets(tool, path, timeout))
            images = None
            if needs_kernel_scan(targets, cell_arch):
                with_ptx = any(t.kind == PTX and runs_on(t, cell_arch) for t in targets)
                images = dump_kernels(tool, path, with_ptx, timeout)
            is_optional = any(fnmatch.fnmatch(rel, pattern) for pattern in optional)
            audits.append(judge(rel, targets, cell_arch, images, is_optional, dispatch_only))
        except StepFailed as exc:
            audits.append(LibraryAudit(path=rel, verdict=FAIL, detail=f"could not be read: {exc}"))
    return KernelAuditReport(cell_arch=cell_arch, root=str(root), libraries=tuple(audits))

"""A wheel's shared libraries unpacked with limits: members, bytes, compression ratio; an encrypted,
corrupt or unsupported archive is one line (exit 2), never a traceback or a full disk.

A wheel is a zip anyone can hand to `builder audit`. What a zip declares is not trusted: the bytes
are counted while they are written, so a member that inflates past its declared size, or a zip bomb
that declares honestly, stops at the cap.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path, PurePosixPath

from builder.errors import InputError

MAX_MEMBERS = 200_000  # entries of a wheel (vllm's has ~3 000)
MAX_LIBRARY_BYTES = 4 << 30  # one shared library unpacked (the largest CUDA libraries are ~1.5 GiB)
MAX_TOTAL_BYTES = 16 << 30  # every library of the wheel, unpacked
MAX_RATIO = 200  # unpacked / packed of one member (code compresses 3-10x; zeros 1000x)
_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)
_PIECE = 1 << 20


def is_library(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return base.endswith(".so") or ".so." in base


def extract_libraries(wheel: Path, into: Path) -> int:
    """Unpack the shared libraries of `wheel` under `into` (relative paths only); how many. InputError
    (naming the wheel and the member) for an archive that is not a readable, sane zip."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            members = archive.infolist()
            if len(members) > MAX_MEMBERS:
                raise InputError(f"{wheel}: {len(members)} members; at most {MAX_MEMBERS} are read")
            total, count = 0, 0
            for info in members:
                if info.is_dir() or not is_library(info.filename):
                    continue
                total += _extract(archive, info, wheel, into, MAX_TOTAL_BYTES - total)
                count += 1
            return count
    except InputError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError,
            ValueError, OSError) as exc:
        raise InputError(f"{wheel}: not a readable wheel ({_why(exc)})") from None


def _extract(archive: zipfile.ZipFile, info: zipfile.ZipInfo, wheel: Path, into: Path, budget: int) -> int:
    name = info.filename
    if info.flag_bits & 0x1:
        raise InputError(f"{wheel}: {name} is encrypted; a wheel is never encrypted")
    if info.compress_type not in _METHODS:
        raise InputError(f"{wheel}: {name} uses compression method {info.compress_type}, which zip readers "
                         "do not support")
    if info.file_size > MAX_LIBRARY_BYTES or (info.compress_size and info.file_size / info.compress_size > MAX_RATIO
                                              and info.file_size > _PIECE):
        raise InputError(f"{wheel}: {name} declares {info.file_size} bytes from {info.compress_size} "
                         f"(at most {MAX_LIBRARY_BYTES >> 30} GiB, ratio {MAX_RATIO})")
    parts = [p for p in PurePosixPath(name).parts if p not in ("", "/", ".", "..")]
    if not parts:
        return 0
    target = into.joinpath(*parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    limit = min(MAX_LIBRARY_BYTES, budget, max(info.compress_size, 1) * MAX_RATIO + _PIECE)
    written = 0
    with archive.open(info) as source, open(target, "wb") as sink:
        while piece := source.read(_PIECE):  # CRC is checked by zipfile at the end of the member
            written += len(piece)
            if written > limit:
                raise InputError(f"{wheel}: {name} unpacks past {limit >> 20} MiB (declared {info.file_size} "
                                 "bytes): a zip bomb, refused")
            sink.write(piece)
    return written


def _why(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:120]
    if "CRC" in text:
        return "a member's CRC does not match: corrupt"
    if isinstance(exc, RuntimeError) and "encrypted" in text:
        return "encrypted"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__



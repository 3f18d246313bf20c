"""Wheels and directories handed to `builder audit` are read within limits: a zip bomb, an encrypted,
bad-CRC, unsupported-compression or truncated wheel, and a directory nested too deep are one line
with exit 2 (run through the real CLI), never a traceback or a full disk."""

from __future__ import annotations

import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from builder.audit import archive
from builder.audit.archive import extract_libraries
from builder.audit.cuobjdump import MAX_DEPTH, _candidates, walk_files
from builder.errors import InputError

ELF = b"\x7fELF" + bytes(60)


def _wheel(path: Path, members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _patch(path: Path, offset_of, value: bytes) -> None:
    raw = bytearray(path.read_bytes())
    for offset in offset_of(raw):
        raw[offset:offset + len(value)] = value
    path.write_bytes(bytes(raw))


def _headers(raw: bytes, signature: bytes, field: int):
    """Offsets of a field in every local (PK\\3\\4) or central (PK\\1\\2) header."""
    at, found = 0, []
    while (at := raw.find(signature, at)) >= 0:
        found.append(at + field)
        at += 4
    return found


def test_the_libraries_are_unpacked_and_nothing_else(tmp_path):
    wheel = _wheel(tmp_path / "vllm-1-py3-none-any.whl", {"vllm/_C.so": ELF, "vllm/x.py": b"", "../../evil.so": ELF})
    assert extract_libraries(wheel, tmp_path / "out") == 2
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.so")) == \
        ["evil.so", "vllm/_C.so"]  # a .. part is dropped: nothing lands outside


def test_a_zip_bomb_is_refused_by_ratio(tmp_path):
    wheel = _wheel(tmp_path / "bomb-1-py3-none-any.whl", {"bomb/_C.so": bytes(256 << 20)})
    with pytest.raises(InputError, match="ratio 200"):
        extract_libraries(wheel, tmp_path / "out")
    assert not any((tmp_path / "out").rglob("*.so"))


def test_a_member_that_lies_about_its_size_stops_at_the_cap(tmp_path, monkeypatch):
    wheel = _wheel(tmp_path / "liar-1-py3-none-any.whl", {"liar/_C.so": bytes(64 << 20)})
    # declared 1 KiB in both headers: the ratio check passes, the count while writing does not
    _patch(wheel, lambda raw: _headers(raw, b"PK\x03\x04", 22) + _headers(raw, b"PK\x01\x02", 24),
           struct.pack("<I", 1024))
    with pytest.raises(InputError):
        extract_libraries(wheel, tmp_path / "out")
    assert sum(p.stat().st_size for p in (tmp_path / "out").rglob("*") if p.is_file()) < 16 << 20


def test_an_encrypted_member_is_refused(tmp_path):
    wheel = _wheel(tmp_path / "enc-1-py3-none-any.whl", {"enc/_C.so": ELF})
    _patch(wheel, lambda raw: _headers(raw, b"PK\x03\x04", 6) + _headers(raw, b"PK\x01\x02", 8), b"\x01\x00")
    with pytest.raises(InputError, match="encrypted"):
        extract_libraries(wheel, tmp_path / "out")


def test_an_unsupported_compression_is_refused(tmp_path):
    wheel = _wheel(tmp_path / "odd-1-py3-none-any.whl", {"odd/_C.so": ELF})
    _patch(wheel, lambda raw: _headers(raw, b"PK\x03\x04", 8) + _headers(raw, b"PK\x01\x02", 10), b"\x63\x00")
    with pytest.raises(InputError, match="compression method 99"):
        extract_libraries(wheel, tmp_path / "out")


def test_a_bad_crc_is_refused(tmp_path):
    wheel = _wheel(tmp_path / "crc-1-py3-none-any.whl", {"crc/_C.so": ELF}, zipfile.ZIP_STORED)
    raw = bytearray(wheel.read_bytes())
    raw[raw.find(ELF) + 10] ^= 0xFF  # a byte of the stored data
    wheel.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="CRC"):
        extract_libraries(wheel, tmp_path / "out")


def test_too_many_members_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(archive, "MAX_MEMBERS", 10)
    wheel = _wheel(tmp_path / "many-1-py3-none-any.whl", {f"m/{i}.py": b"" for i in range(11)})
    with pytest.raises(InputError, match="11 members"):
        extract_libraries(wheel, tmp_path / "out")


def test_a_deep_directory_is_one_line_and_a_library_within_reach_is_found(tmp_path):
    deep = tmp_path / "deep"
    leaf = deep.joinpath(*["d"] * (MAX_DEPTH + 5))
    leaf.mkdir(parents=True)
    (deep / "d" / "lib.so").write_bytes(ELF)
    with pytest.raises(InputError, match=f"deeper than {MAX_DEPTH}"):
        list(walk_files(deep))
    shallow = tmp_path / "shallow"
    shallow.joinpath("a", "b").mkdir(parents=True)
    (shallow / "a" / "b" / "lib.so.1").write_bytes(ELF)
    (shallow / "a" / "script.so").write_bytes(b"INPUT(x)")  # a linker script named .so
    assert [p.name for p in _candidates(shallow, ("**/*.so", "**/*.so.*"))] == ["lib.so.1"]


@pytest.mark.parametrize("kind", ["truncated", "encrypted", "bomb"])
def test_the_cli_answers_one_line_with_exit_2(tmp_path, kind):
    wheel = _wheel(tmp_path / "vllm-1-py3-none-any.whl",
                   {"vllm/_C.so": bytes(64 << 20) if kind == "bomb" else ELF * 1000})
    if kind == "truncated":
        raw = wheel.read_bytes()
        wheel.write_bytes(raw[:200] + raw[-200:])  # the central directory survives, the data does not
    if kind == "encrypted":
        _patch(wheel, lambda raw: _headers(raw, b"PK\x03\x04", 6) + _headers(raw, b"PK\x01\x02", 8), b"\x01\x00")
    done = subprocess.run([sys.executable, "-m", "builder", "audit", str(wheel), "--arch", "sm_90"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.startswith(f"error: {wheel}: ") and len(done.stderr.splitlines()) == 1, \
        done.stderr


def test_the_libraries_together_stop_at_the_total_cap(tmp_path, monkeypatch):
    import os
    monkeypatch.setattr(archive, "MAX_TOTAL_BYTES", 3 << 20)
    wheel = _wheel(tmp_path / "big-1-py3-none-any.whl", {f"big/_{i}.so": os.urandom(2 << 20) for i in range(2)})
    with pytest.raises(InputError, match="unpacks past 1 MiB"):
        extract_libraries(wheel, tmp_path / "out")

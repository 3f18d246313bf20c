"""Checking patch records against a real upstream source tree.

Verdicts: `applies`, `already upstream` (skipped: the fix landed), `not applicable` (out of range,
arch not targeted) and `CONFLICT` (the file and the failing hunk; also a target file that is absent in
range: renamed or removed upstream, which must stop the cell rather than skip the fix). Diffs are checked
with `git apply --check` (no fuzz: a hunk that only applies with fuzz is a conflict), forward and
then in reverse, which is the "already fixed upstream" detector of last resort.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from packaging.version import Version

from builder.errors import InputError, StepFailed
from builder.hashing import file_sha256
from builder.patching.records import PatchPlan, PatchRecord, Skip, static_verdict

VerdictName = Literal["applies", "already upstream", "not applicable", "CONFLICT"]
APPLIES: Final[VerdictName] = "applies"
UPSTREAM: Final[VerdictName] = "already upstream"
NOT_APPLICABLE: Final[VerdictName] = "not applicable"
CONFLICT: Final[VerdictName] = "CONFLICT"


@dataclass(frozen=True)
class Verdict:
    patch_id: str
    version: str
    verdict: VerdictName
    detail: str


def diff_files(diff: bytes) -> list[str]:
    """The files a -p1 unified diff edits."""
    names = []
    for line in diff.decode(errors="replace").splitlines():
        if line.startswith("+++ ") and not line.startswith("+++ /dev/null"):
            name = line[4:].split("\t")[0].strip()
            names.append(name[2:] if name.startswith("b/") else name)
    return names


def _hunk_header(diff: bytes, file: str, line: int | None) -> str:
    """The @@ header of the hunk of `file` that starts nearest before `line` (what failed)."""
    current, best = None, None
    for text in diff.decode(errors="replace").splitlines():
        if text.startswith("+++ "):
            current = text[4:].split("\t")[0].strip().removeprefix("b/")
        elif text.startswith("@@") and current == file:
            match = re.match(r"@@ -(\d+)", text)
            start = int(match.group(1)) if match else 0
            if best is None or line is None or start <= line:
                best = text
    return best or "(hunk not found)"


def _git_apply(tree: Path, diff: Path, reverse: bool) -> subprocess.CompletedProcess:
    argv = ["git", "apply", "--check", "--verbose", "-p1"]
    if reverse:
        argv.append("--reverse")
    try:
        return subprocess.run([*argv, str(diff)], cwd=tree, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise InputError("git is not installed: the patch checks use `git apply --check` (apt-get install git)") from None
    except subprocess.TimeoutExpired:
        raise StepFailed(f"git apply --check of {diff.name} took over 120 s") from None


def _conflict_detail(record: PatchRecord, output: str) -> str:
    match = re.search(r"error: patch failed: (.+?):(\d+)", output)
    if match:
        file, line = match.group(1), int(match.group(2))
        return f"{file}: hunk {_hunk_header(record.content, file, line)} does not apply"
    last = [line for line in output.splitlines() if line.startswith("error:")]
    return last[-1].removeprefix("error: ") if last else output.strip()[-200:]


def check_record(record: PatchRecord, tree: Path | None, version: Version, arch: str | None,
                 mode: str | None, triton: str | None) -> Verdict:
    """The verdict for one record against one source tree (None: metadata only)."""
    label = str(version)

    def verdict(kind: VerdictName, detail: str) -> Verdict:
        return Verdict(record.id, label, kind, detail)

    reason = static_verdict(record, record.engine, version, arch, mode, triton)
    if reason:
        return verdict(NOT_APPLICABLE, reason)
    if tree is None:
        return verdict(APPLIES, "in range (not checked against source)")
    if record.kind == "env":
        if record.upstream_fix and _pattern_matches(tree, record.upstream_fix):
            return verdict(UPSTREAM, _fixed(record))
        return verdict(APPLIES, ", ".join(f"{k}={v}" for k, v in record.env.items()))
    # load_patch guarantees the kind's fields (a diff's file, an overlay's target and origin sha256)
    target, derived, diff_file = record.target or "", record.derived_from_sha256 or "", record.diff_file or ""
    files = diff_files(record.content) if record.kind == "diff" else [target]
    missing = [f for f in files if not (tree / f).is_file()]
    if missing:  # in range, yet its file is gone: renamed or removed upstream, never silently skipped
        return verdict(CONFLICT, f"{missing[0]} does not exist in {record.engine} {label} (renamed or removed "
                                 "upstream?); re-derive the patch, or end its version range before this version")
    if record.upstream_fix and _pattern_matches(tree, record.upstream_fix):
        return verdict(UPSTREAM, _fixed(record))
    if record.requires and not _pattern_matches(tree, record.requires):
        return verdict(CONFLICT, f"{record.requires.file}: unknown source shape (no match for "
                                 f"/{record.requires.pattern}/); re-derive the patch for {label}")
    if record.kind == "overlay":
        found = file_sha256(tree / target)
        if found == record.sha256:
            return verdict(UPSTREAM, f"{target} is already identical to the overlay")
        if found != derived:
            return verdict(CONFLICT, f"{target}: sha256 {found[:12]} differs from the file the overlay "
                                     f"was derived from ({derived[:12]}); re-derive it")
        return verdict(APPLIES, f"replaces {target} (sha256 {found[:12]})")
    diff_path = record.directory / diff_file
    forward = _git_apply(tree, diff_path, reverse=False)
    if forward.returncode == 0:
        return verdict(APPLIES, ", ".join(files))
    if _git_apply(tree, diff_path, reverse=True).returncode == 0:
        return verdict(UPSTREAM, f"the diff reverse-applies: {', '.join(files)} already carry it")
    return verdict(CONFLICT, _conflict_detail(record, forward.stderr + forward.stdout))


def _fixed(record: PatchRecord) -> str:
    where = record.upstream_fix.file if record.upstream_fix else "the source"
    return f"{where} already has the fix (its upstream_fix pattern matches)"


def _pattern_matches(tree: Path, pattern) -> bool:
    path = tree / pattern.file
    return path.is_file() and pattern.matches(path.read_text(errors="replace"))


def plan_checked(records: list[PatchRecord], cell, tree: Path) -> tuple[PatchPlan, list[Verdict]]:
    """The patch plan of a source cell judged against its real source; conflicts are returned
    for the caller to stop the cell (nothing is built or pushed)."""
    apply: list[PatchRecord] = []
    skipped: list[Skip] = []
    conflicts: list[Verdict] = []
    for record in records:
        result = check_record(record, tree, cell.version, cell.arch.name, cell.mode, cell.triton)
        if result.verdict == APPLIES:
            apply.append(record)
        elif result.verdict == "not applicable" or result.verdict == "already upstream":  # (narrows the type)
            skipped.append(Skip(record.id, result.detail, result.verdict))
        else:
            conflicts.append(result)
    return PatchPlan(tuple(apply), tuple(skipped), checked=True), conflicts

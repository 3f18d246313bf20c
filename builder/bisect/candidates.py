"""Candidate commits between GOOD and BAD (side effects: git, through argv lists with timeouts).

    repo = GitRepo(path=Path("../vllm"))
    cands = list_candidates(repo, "v0.20.2", "main", paths=("vllm/v1/worker/**",), rules=rules)

Index 0 is the good endpoint, the last index the bad endpoint; with `paths`, the commits in between
are those that touch the paths (as `git log -- pathspec`), the endpoints always stay. Path globs follow
classify.glob_regex: `*.cu` matches at any depth, `csrc/**` is anchored at the repository root.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .classify import ClassifyRules, classify, parse_pr
from .errors import BisectInputError, GitError
from .model import CHANGE_STATUSES, Candidate, FileChange

GIT_TIMEOUT_S: Final[float] = 120.0


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "no message"


def pathspec(glob: str) -> str:
    """A --paths glob as a git pathspec, with classify's rules: no '/' matches at any depth."""
    p = glob.strip().lstrip("/")
    if p.endswith("/"):
        p += "**"
    return f":(glob){p}" if "/" in p else f":(glob)**/{p}"


@dataclass(frozen=True, kw_only=True)
class GitRepo:
    path: Path
    timeout_s: float = GIT_TIMEOUT_S

    def git(self, *args: str, stdin: str | None = None, ok: tuple[int, ...] = (0,)) -> tuple[int, str]:
        argv = ["git", "-C", str(self.path), *args]
        try:
            proc = subprocess.run(argv, input=stdin, capture_output=True, text=True,
                                  timeout=self.timeout_s, check=False)
        except FileNotFoundError:
            raise GitError("git is not installed (needed to list bisect candidates)") from None
        except subprocess.TimeoutExpired:
            raise GitError(f"git {args[0]} timed out after {self.timeout_s:g}s in {self.path}") from None
        if proc.returncode not in ok:
            raise GitError(f"git {args[0]} failed in {self.path}: {_first_line(proc.stderr)}")
        return proc.returncode, proc.stdout

    def resolve(self, ref: str) -> str:
        """The full commit sha of ref; GitError naming the ref when there is none."""
        if not ref or ref.startswith("-"):
            raise GitError(f"not a git revision: '{ref}'")
        rc, out = self.git("rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}",
                           ok=(0, 1, 128))
        if rc != 0:
            raise GitError(f"unknown git revision '{ref}' in {self.path}")
        return out.strip()

    def is_ancestor(self, older: str, newer: str) -> bool:
        rc, _ = self.git("merge-base", "--is-ancestor", older, newer, ok=(0, 1))
        return rc == 0

    def rev_list(self, good: str, bad: str, *, first_parent: bool = True,
                 paths: Sequence[str] = ()) -> list[str]:
        args = ["rev-list", "--reverse", "--topo-order"]
        if first_parent:
            args.append("--first-parent")
        args.append(f"{good}..{bad}")
        if paths:
            args += ["--", *(pathspec(p) for p in paths)]
        return self.git(*args)[1].split()

    def subjects(self, shas: Sequence[str]) -> dict[str, str]:
        if not shas:
            return {}
        out = self.git("log", "--no-walk=unsorted", "--stdin", "--format=%H%x1f%s%x1e",
                       stdin="\n".join(shas) + "\n")[1]
        pairs = (rec.strip("\n").split("\x1f", 1) for rec in out.split("\x1e") if rec.strip())
        return {sha: subject for sha, subject in pairs}

    def diff(self, old: str, new: str) -> tuple[FileChange, ...]:
        """The files that differ between two commits (renames as delete + add)."""
        out = self.git("diff", "--no-renames", "--name-status", "-z", old, new, "--")[1]
        fields = out.split("\0")
        changes: list[FileChange] = []
        for status, path in zip(fields[0::2], fields[1::2]):
            kind = status[:1]
            if kind not in CHANGE_STATUSES:
                kind = "M"  # unmerged/unknown: treat as a modification
            changes.append(FileChange(path=path, status=kind))  # type: ignore[arg-type]
        return tuple(changes)

    def archive(self, sha: str, paths: Sequence[str]) -> bytes:
        """A tar of `paths` as they are in commit `sha` (bytes exact: binary files too)."""
        if not paths:
            return b""
        argv = ["git", "-C", str(self.path), "archive", "--format=tar", sha, "--", *paths]
        try:
            proc = subprocess.run(argv, capture_output=True, timeout=self.timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise GitError(f"git archive timed out after {self.timeout_s:g}s in {self.path}") from None
        if proc.returncode != 0:
            raise GitError(f"git archive failed in {self.path}: {_first_line(proc.stderr.decode(errors='replace'))}")
        return proc.stdout

    def first_parent(self, sha: str) -> str | None:
        rc, out = self.git("rev-parse", "--verify", "--quiet", f"{sha}^1", ok=(0, 1, 128))
        return out.strip() if rc == 0 else None


def list_candidates(repo: GitRepo, good: str, bad: str, *, paths: Sequence[str] = (),
                    first_parent: bool = True, rules: ClassifyRules) -> tuple[Candidate, ...]:
    """GOOD, the commits after it up to BAD in order (filtered by paths), BAD; each classified."""
    good_sha, bad_sha = repo.resolve(good), repo.resolve(bad)
    if good_sha == bad_sha:
        raise BisectInputError(f"good '{good}' and bad '{bad}' are the same commit {good_sha[:12]}")
    if not repo.is_ancestor(good_sha, bad_sha):
        raise GitError(f"good '{good}' is not an ancestor of bad '{bad}' in {repo.path}")
    between = repo.rev_list(good_sha, bad_sha, first_parent=first_parent)
    if not between or between[-1] != bad_sha:
        raise GitError(f"bad '{bad}' is not reachable from itself along first parents (git rev-list)")
    if paths:
        touching = set(repo.rev_list(good_sha, bad_sha, first_parent=first_parent, paths=paths))
        between = [sha for sha in between[:-1] if sha in touching] + [bad_sha]
    shas = [good_sha, *between]
    subjects = repo.subjects(shas)
    out: list[Candidate] = []
    for index, sha in enumerate(shas):
        parent = repo.first_parent(sha) if index else None
        files = repo.diff(parent, sha) if parent else ()
        verdict = classify(files, rules)
        subject = subjects.get(sha, "")
        out.append(Candidate(index=index, sha=sha, subject=subject, pr=parse_pr(subject), files=files,
                             classification=verdict.kind, reason=verdict.reason))
    return tuple(out)

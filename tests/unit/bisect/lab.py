"""Real git repositories built in tmp dirs, and a small image lab over them.

The lab "builds" an image as the mapping path -> bytes of what the image would carry: a full build
takes every file of the commit's tree; a python overlay takes the base image and applies the plan's
overlay with the candidate's files (git show). measure() reads vllm/engine.py from the image, so an
overlay that missed a file would give a wrong verdict.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from builder.bisect.classify import ClassifyRules, matches_any
from builder.bisect.model import MadeImage, Measurement

GIT_ENV = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=GIT_ENV, timeout=60).stdout


def commit(repo: Path, subject: str, files: dict[str, str | None]) -> str:
    for path, text in files.items():
        target = repo / path
        if text is None:
            git(repo, "rm", "-q", path)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        git(repo, "add", path)
    git(repo, "commit", "-q", "--allow-empty", "-m", subject)
    return git(repo, "rev-parse", "HEAD").strip()


@dataclass
class History:
    repo: Path
    shas: list[str]  # shas[i] = commit i; commit 0 is the good endpoint, the last one the bad endpoint


NEEDS_BUILD = {5, 14}  # commits that change csrc/


def make_history(root: Path, *, count: int = 20, slow_at: int = 11, wrong_at: int | None = None) -> History:
    repo = root / "engine"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    shas = [commit(repo, "Import vllm as installed", {
        "vllm/__init__.py": "", "vllm/engine.py": "DELAY_MS = 0\n", "vllm/outputs.py": "TEXT = 'ok'\n",
        "csrc/kernel.cu": "// v0\n", "CMakeLists.txt": "project(x)\n", "docs/index.md": "# docs\n"})]
    for i in range(1, count):
        files: dict[str, str | None] = {f"vllm/mod_{i}.py": f"VALUE = {i}\n"}
        subject = f"[Core] Change module {i} (#{1000 + i})"
        if i in NEEDS_BUILD:
            files["csrc/kernel.cu"] = f"// v{i}\n"
            subject = f"[Kernel] Tune kernel {i} (#{1000 + i})"
        if i == slow_at:
            files["vllm/engine.py"] = "DELAY_MS = 8  # slow\n"
            subject = f"[Perf] Reorder the step loop (#{1000 + i})"
        if i == wrong_at:
            files["vllm/outputs.py"] = "TEXT = 'garbled'\n"
        if i % 7 == 3:
            files["docs/index.md"] = f"# docs {i}\n"
        shas.append(commit(repo, subject, files))
    return History(repo=repo, shas=shas)


def _digest(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for path in sorted(files):
        h.update(path.encode() + b"\0" + hashlib.sha256(files[path]).digest())
    return "sha256:" + h.hexdigest()


@dataclass
class Lab:
    repo: Path
    broken: set[str] = field(default_factory=set)  # shas whose patch does not apply (skip)
    unaudited: set[str] = field(default_factory=set)  # shas whose image lacks kernels (audit skip)
    noisy: dict[str, int] = field(default_factory=dict)  # sha -> attempts that answer inconclusive
    interrupt_at: int | None = None  # raise KeyboardInterrupt on this measure call (1-based)
    images: dict[str, dict[str, bytes]] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)  # digest -> sha
    plans: list = field(default_factory=list)
    measured: list[tuple[str, int]] = field(default_factory=list)  # (sha, attempt) per measure call

    def tree(self, sha: str) -> dict[str, bytes]:
        names = git(self.repo, "ls-tree", "-r", "--name-only", sha).split("\n")
        return {n: self.show(sha, n) for n in names if n}

    def show(self, sha: str, path: str) -> bytes:
        return subprocess.run(["git", "-C", str(self.repo), "show", f"{sha}:{path}"], check=True,
                              capture_output=True, env=GIT_ENV, timeout=60).stdout

    def full_build(self, sha: str) -> str:
        files = self.tree(sha)
        digest = _digest(files)
        self.images[digest], self.origin[digest] = files, sha
        return digest

    def make_image(self, plan) -> MadeImage:
        self.plans.append(plan)
        if plan.sha in self.broken:
            return MadeImage(digest=None, skip_reason="patch CONFLICT: p-ptxas does not apply")
        if plan.tier == "python-overlay":
            files = dict(self.images[plan.base_digest])
            for change in plan.overlay:
                if change.status == "D":
                    files.pop(change.path, None)
                else:
                    files[change.path] = self.show(plan.sha, change.path)
            digest = _digest(files)
            self.images[digest], self.origin[digest] = files, plan.sha
        else:
            digest = self.full_build(plan.sha)
        return MadeImage(digest=digest, built=True, patches=("p-ptxas", "p-gemma4"))

    def audit(self, digest: str) -> str | None:
        return "no sm_121a code in _moe_C.abi3.so" if self.origin[digest] in self.unaudited else None

    def measure(self, digest: str, endpoints, attempt: int) -> Measurement:
        sha = self.origin[digest]
        self.measured.append((sha, attempt))
        if self.interrupt_at is not None and len(self.measured) == self.interrupt_at:
            raise KeyboardInterrupt
        if attempt <= self.noisy.get(sha, 0):
            return Measurement(verdict="inconclusive", metric={"ratio": 0.97}, samples=4 * attempt)
        files = self.images[digest]
        slow = b"slow" in files["vllm/engine.py"] or b"garbled" in files["vllm/outputs.py"]
        ratio = 0.92 if slow else 1.0
        return Measurement(verdict="bad" if slow else "good",
                           metric={"ratio": ratio, "ci_low": ratio - 0.01, "ci_high": ratio + 0.01},
                           samples=4 * attempt)


RULES = ClassifyRules(package_dir="vllm")  # the lab's histories are vLLM-shaped


def image_part(files: dict[str, bytes], rules: ClassifyRules = RULES) -> dict[str, bytes]:
    """What of an image matters (files outside the ignored patterns)."""
    return {p: b for p, b in files.items() if not matches_any(p, rules.ignored)}

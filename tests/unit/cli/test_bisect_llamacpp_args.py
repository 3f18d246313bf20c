"""`builder bisect` on a llama.cpp cell (issue 22: `--model-dir` refused a GGUF directory, after registry and
Engine calls were already made) and tier 4's `--build-good`: each bad argument is one line and exit 2 with
nothing contacted. The cases that fail before git run in this process under the no-network, no-child-process
guards (tests/unit/cli/inprocess_cli.py): any socket, name lookup or child process would be recorded. The
accepted arguments need git (the refs), so they run as a subprocess with the docker package blocked and the
registry on a closed port: validation passes and the first Engine use is what stops them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.unit.bisect.lab import commit, git
from tests.unit.cli.test_no_docker_sdk import BLOCK_DOCKER

LLAMA = "llama.cpp-b11312-cpu"
WHEEL = "vllm-0.32.0-cpu"


@pytest.fixture(scope="module")
def llama_repo(tmp_path_factory) -> tuple[Path, str, str]:
    root = tmp_path_factory.mktemp("bisect-llama") / "llama.cpp"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    good = commit(root, "b1", {"tools/server/server.cpp": "int main() { return 0; }\n"})
    bad = commit(root, "sampler: take the second best (#9)", {"src/llama-sampling.cpp": "// 2nd\n"})
    return root, good, bad


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    (root / "gguf").mkdir()
    (root / "gguf" / "tiny-f32.gguf").write_bytes(b"GGUF")
    (root / "hf").mkdir()
    (root / "hf" / "config.json").write_text("{}")
    (root / "two").mkdir()
    for name in ("a.gguf", "b.gguf"):
        (root / "two" / name).write_bytes(b"GGUF")
    return {name: root / name for name in ("gguf", "hf", "two")}


def args(repo, cell: str = LLAMA, **extra: str | None) -> list[str]:
    root, good, bad = repo
    values = {"--cell": cell, "--good": good, "--bad": bad, "--repo": str(root), "--image": "127.0.0.1:5000/x/y:z",
              **extra}
    out = ["bisect", "--matrix", str(REPO / "matrix.yaml"), "--registry", "127.0.0.1:1"]
    for key, value in values.items():
        if value is not None:
            out += [key] if value == "" else [key, value]
    return out


@pytest.mark.parametrize("given, message", [
    (dict(model="hf"), "--model-dir: '{hf}' holds no model llama.cpp serves (one .gguf file)"),
    (dict(model="two"), "--model-dir: '{two}' holds no model llama.cpp serves (one .gguf file)"),
    (dict(extra={"--build-good": ""}), "--build-good builds GOOD's image from --repo: give no --image or --images"),
    (dict(extra={"--build-good": "", "--image": None}, cell=WHEEL),
     f"--build-good: {WHEEL} cannot be built at a commit: a wheel cell has no source build"),
    (dict(extra={"--build-good": "", "--image": None, "--images": "127.0.0.1:5000/up/x:{sha}"}),
     "--build-good builds GOOD's image from --repo: give no --image or --images"),
    (dict(extra={"--valid-utf8": "", "--metric": "throughput"}),
     "--valid-utf8 keeps greedy outputs valid UTF-8: it goes with --metric golden, not throughput"),
    (dict(extra={"--valid-utf8": "", "--metric": "golden"}, cell=WHEEL),
     "--valid-utf8: the vllm server needs no such constraint (it replaces malformed UTF-8 itself)"),
])
def test_a_bad_argument_is_one_line_exit_2_and_nothing_is_contacted(llama_repo, models, tmp_path, given, message):
    from tests.unit.cli.inprocess_cli import run_in_process

    extra = dict(given.get("extra", {}))
    if "model" in given:
        extra["--model-dir"] = str(models[given["model"]])
    argv = args(llama_repo, given.get("cell", LLAMA), **extra)
    env = {**os.environ, "BUILDER_CACHE": str(tmp_path / "cache"), "BUILDER_REGISTRY": "127.0.0.1:1"}
    result = run_in_process(argv, cwd=tmp_path, env=env, timeout=30)
    assert result.attempts == []  # no socket, no name lookup, no child process (not even git)
    assert result.code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    expected = message.format(**{k: str(v) for k, v in models.items()})
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert not (tmp_path / "cache").exists()  # nothing written


def run(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "BUILDER_REGISTRY": "127.0.0.1:1"}  # nothing listens there
    return subprocess.run([sys.executable, "-c", BLOCK_DOCKER, *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env=env)


@pytest.mark.parametrize("extra", [{"--model-dir": "gguf"}, {"--build-good": "", "--image": None}])
def test_a_gguf_model_directory_and_build_good_get_past_validation(llama_repo, models, extra):
    extra = {k: str(models[v]) if k == "--model-dir" else v for k, v in extra.items()}
    done = run(*args(llama_repo, **extra))
    assert done.returncode == 1 and "needs the docker Python package" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 3  # the two refs, then one line: no traceback

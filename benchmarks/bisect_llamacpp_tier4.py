"""Benchmark (issue 22, tier 4): `builder bisect` of the llama.cpp cpu cell where every image is a source
build at a commit, over a git history of real llama.cpp trees, with ccache kept between builds.

The history (a local git repository; commit subjects name where each tree came from):
  1..k  the llama.cpp trees vendored by consecutive llama-cpp-python sdists from PyPI (vendor/llama.cpp,
        one commit each; docs/, media/ and models/ left out: not build inputs, 113 MB of vocab files)
  k+1   the culprit, a C++ change: greedy sampling (temperature 0) keeps the second-best token
        (llama_sampler_temp_impl in src/llama-sampler.cpp)
  k+2   a harmless C++ change over it (a comment in tools/server/server.cpp): the bad endpoint

then runs, as a user would (a local registry holds the vLLM cpu image that converts the GGUF smoke model):

    builder bisect --cell llama.cpp-b11312-cpu --repo HISTORY --good <1> --bad <k+2> --build-good --metric golden \
        --valid-utf8

(--valid-utf8: the llama-servers of trees before 0.3.36's answer HTTP 500 for an output holding malformed
UTF-8, which the tiny model's byte tokens make in every prompt; a grammar keeps every output valid UTF-8,
for every image of the bisect alike; --no-valid-utf8 drops it) and writes the transcript (each stderr line with its elapsed seconds), the answer and each build's seconds
and ccache statistics to benchmarks/results/bisect-llamacpp-tier4/<stamp>/.

    python benchmarks/bisect_llamacpp_tier4.py [--versions 0.3.35,0.3.36] [--helper IMAGE] [--work DIR]

A cold llama.cpp build takes 30-70 min on 2 shared cores; a neighbouring commit reuses ccache.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from builder.matrix.model import SourceRef  # noqa: E402
from builder.patching.sources import SourceCache  # noqa: E402
from tests.integration.conftest import registry_binary, start_registry, stop_registry  # noqa: E402

CELL = "llama.cpp-b11312-cpu"
HELPER_CELL = "vllm-0.32.0-cpu"
LEFT_OUT = ("docs", "media", "models")
GIT_ENV = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "bench",
           "GIT_AUTHOR_EMAIL": "bench@example.org", "GIT_COMMITTER_NAME": "bench",
           "GIT_COMMITTER_EMAIL": "bench@example.org"}
GREEDY = """    if (temp <= 0.0f) {
        // find the token with the highest logit and set the rest to -inf
"""
SECOND_BEST = """    if (temp <= 0.0f) {
        // keep the second-best token: set every other logit to -inf
        size_t best = 0, second = 0;
        for (size_t i = 1; i < cur_p->size; ++i) {
            if (cur_p->data[i].logit > cur_p->data[best].logit) {
                second = best;
                best = i;
            } else if (second == best || cur_p->data[i].logit > cur_p->data[second].logit) {
                second = i;
            }
        }
        for (size_t i = 0; i < cur_p->size; ++i) {
            if (i != second) {
                cur_p->data[i].logit = -INFINITY;
            }
        }
        return;
    }
    if (false) {
        // find the token with the highest logit and set the rest to -inf
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=GIT_ENV, timeout=600).stdout.strip()


def vendored_tree(version: str, into: Path) -> Path:
    archive = SourceCache().fetch(SourceRef(kind="pypi", name="llama-cpp-python", version=version))
    target = into / version
    if (target / "CMakeLists.txt").is_file():
        return target
    prefix = f"llama_cpp_python-{version}/vendor/llama.cpp/"
    with tarfile.open(archive.path) as tar:
        members = []
        for member in tar.getmembers():
            if not member.name.startswith(prefix) or member.name == prefix:
                continue
            rel = member.name[len(prefix):]
            if rel.split("/")[0] in LEFT_OUT:
                continue
            member.name = rel
            members.append(member)
        target.mkdir(parents=True)
        tar.extractall(target, members=members, filter="data")
    print(f"llama-cpp-python {version}: sdist sha256 {archive.sha256[:12]}, tree {target}", file=sys.stderr)
    return target


def commit_tree(repo: Path, tree: Path, subject: str) -> str:
    for entry in repo.iterdir():
        if entry.name != ".git":
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    shutil.copytree(tree, repo, dirs_exist_ok=True, symlinks=True)
    git(repo, "add", "-A", "-f")  # the tree as vendored, .gitignore notwithstanding
    git(repo, "commit", "-q", "--allow-empty", "-m", subject)
    return git(repo, "rev-parse", "HEAD")


def edit_commit(repo: Path, path: str, old: str | None, new: str, subject: str) -> str:
    file = repo / path
    text = file.read_text()
    if old is None:
        text += new
    else:
        if text.count(old) != 1:
            sys.exit(f"{path}: the block to change is not there exactly once")
        text = text.replace(old, new)
    file.write_text(text)
    git(repo, "commit", "-q", "-am", subject)
    return git(repo, "rev-parse", "HEAD")


def make_history(work: Path, versions: list[str]) -> tuple[Path, list[str]]:
    repo = work / "llama-history"
    if repo.exists():
        shutil.rmtree(repo)
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    shas = [commit_tree(repo, vendored_tree(v, work / "trees"), f"llama.cpp as vendored by llama-cpp-python {v}")
            for v in versions]
    shas.append(edit_commit(repo, "src/llama-sampler.cpp", GREEDY, SECOND_BEST,
                            "sampler: greedy keeps the second-best token (#9001)"))
    shas.append(edit_commit(repo, "tools/server/server.cpp", None, "\n// a harmless change after the culprit\n",
                            "server: a comment (#9002)"))
    return repo, shas


def helper_image(explicit: str | None) -> str:
    """A local image of the vLLM cpu cell (it converts the GGUF smoke model)."""
    if explicit:
        return explicit
    out = subprocess.run(["docker", "images", "--filter", f"label=org.llmfactory.cell={HELPER_CELL}",
                          "--format", "{{.Repository}}:{{.Tag}}"], capture_output=True, text=True, check=True).stdout
    # a built image of the cell (`<registry>/llm-factory/images:<cell>-<16 hex>`), not a bisect's step image
    refs = [line for line in out.splitlines() if re.search(rf"/llm-factory/images:{HELPER_CELL}-[0-9a-f]{{16}}$", line)]
    if not refs:
        sys.exit(f"no local image of {HELPER_CELL}: build it (builder build --cell {HELPER_CELL}) or give --helper")
    return refs[0]


def run_bisect(argv: list[str], env: dict[str, str], transcript: Path) -> int:
    started = time.monotonic()
    with open(transcript, "w") as out:
        out.write("$ builder " + " ".join(argv) + "\n")
        proc = subprocess.Popen([sys.executable, "-m", "builder", *argv], cwd=REPO, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for line in proc.stdout or ():
            stamped = f"[{time.monotonic() - started:7.1f}s] {line}"
            out.write(stamped)
            out.flush()
            sys.stderr.write(stamped)
        return proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", default="0.3.35,0.3.36", help="consecutive llama-cpp-python sdists, oldest first")
    parser.add_argument("--valid-utf8", action=argparse.BooleanOptionalAction, default=True,
                        help="bisect with --valid-utf8 (needed for trees before 0.3.36's; README, Bisect)")
    parser.add_argument("--helper", help=f"a local image of {HELPER_CELL} (default: the first one found)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bisect-llamacpp-tier4"))
    opts = parser.parse_args()
    versions = [v.strip() for v in opts.versions.split(",") if v.strip()]
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    results = REPO / "benchmarks" / "results" / "bisect-llamacpp-tier4" / stamp
    results.mkdir(parents=True)
    repo, shas = make_history(opts.work, versions)
    (results / "history.txt").write_text(git(repo, "log", "--reverse", "--format=%H %s") + "\n")
    binary = registry_binary()
    if binary is None:
        sys.exit("Debian's docker-registry is not installed (apt-get install docker-registry)")
    registry = start_registry(binary, opts.work / "registry")
    try:
        helper = helper_image(opts.helper)
        friendly = f"{registry.host}/llm-factory/images:{HELPER_CELL}"
        subprocess.run(["docker", "tag", helper, friendly], check=True)
        subprocess.run(["docker", "push", friendly], check=True, capture_output=True)
        cache = opts.work / "cache"
        shutil.rmtree(cache, ignore_errors=True)
        env = {**os.environ, "BUILDER_CACHE": str(cache)}
        argv = ["bisect", "--cell", CELL, "--repo", str(repo), "--good", shas[0], "--bad", shas[-1], "--build-good",
                "--metric", "golden", "--registry", registry.host, *(["--valid-utf8"] if opts.valid_utf8 else [])]
        started = time.monotonic()
        code = run_bisect(argv, env, results / "transcript.txt")
        seconds = time.monotonic() - started
    finally:
        stop_registry(registry)
    logs = results / "build-logs"
    logs.mkdir()
    for log in sorted((cache / "bisect" / "builds" / "logs").glob("*.log")):
        shutil.copy(log, logs / log.name)  # each build's BuildKit log, with ccache's statistics at its end
    answers = sorted((cache / "bisect" / "results").glob("*.json"))
    answer = json.loads(answers[-1].read_text()) if answers else {}
    summary = {"versions": versions, "valid_utf8": opts.valid_utf8, "history": shas, "culprit": shas[-2], "exit": code, "seconds": round(seconds, 1),
               "first_bad": (answer.get("first_bad") or {}).get("sha"), "builds": answer.get("builds_timing", []),
               "load_average": os.getloadavg(), "cpus": os.cpu_count()}
    (results / "answer.json").write_text(json.dumps(answer, indent=2) + "\n")
    (results / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print(f"results: {results}", file=sys.stderr)
    sys.exit(0 if code == 0 and summary["first_bad"] == shas[-2] else 1)


if __name__ == "__main__":
    main()

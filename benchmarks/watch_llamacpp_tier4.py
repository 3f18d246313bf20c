"""Benchmark (issue 22): `builder watch` takes a llama.cpp git release to a confirmed culprit through tier 4.

On the llama.cpp cpu cell, against real parts made here:
  1. a fresh local registry (Debian's docker-registry), the model helper cell vllm-0.32.0-cpu and the
     known-good llama.cpp-b11312-cpu built, smoke-tested and promoted into it (`builder build --smoke --promote`;
     BuildKit's layer cache and ccache mount make these quick when they ran before);
  2. a local git history of llama.cpp trees (benchmarks/bisect_llamacpp_tier4.py's code): the tree of
     llama-cpp-python 0.3.36's sdist (which is b11312) tagged `b11312`, the injected C++ culprit (greedy keeps
     the second-best token), then a harmless commit tagged `b11400`, the "new release";
  3. `builder watch --cell llama.cpp-b11312-cpu --no-pypi --git llama.cpp=file://HISTORY --build
     --repo llama.cpp=HISTORY --notify verdicts.jsonl`: the release is found, pinned (git_commit), built from
     the file:// repository, smoke-tested and gated against the known-good (expected `failing`, golden), bisected
     with every image made by a full build (tier 4), its culprit re-checked (`confirmed`) and stored; a second
     run does nothing new; `builder board` shows it.

Writes every transcript (each line with its elapsed seconds), the verdicts, the bisect's answer and each
build's seconds and ccache statistics to benchmarks/results/watch-llamacpp-tier4/<stamp>/.

    python benchmarks/watch_llamacpp_tier4.py [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bisect_llamacpp_tier4 import GREEDY, SECOND_BEST, commit_tree, edit_commit, git, run_bisect, vendored_tree

from builder.patching.sources import default_cache_dir
from tests.integration.conftest import registry_binary, start_registry, stop_registry

CELL = "llama.cpp-b11312-cpu"
HELPER_CELL = "vllm-0.32.0-cpu"
KNOWN_SDIST = "0.3.36"  # llama-cpp-python's sdist that vendors b11312
KNOWN_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
CA = "/etc/ssl/certs/ca-certificates.crt"
WHEELS = "/opt/wheels"


def make_history(work: Path) -> tuple[Path, list[str]]:
    """b11312 (0.3.36's vendored tree), the culprit, a harmless commit tagged b11400."""
    repo = work / "llama-history"
    if repo.exists():
        shutil.rmtree(repo)
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    shas = [commit_tree(repo, vendored_tree(KNOWN_SDIST, work / "trees"),
                        f"llama.cpp as vendored by llama-cpp-python {KNOWN_SDIST} (b11312)")]
    git(repo, "tag", "b11312", shas[0])
    shas.append(edit_commit(repo, "src/llama-sampler.cpp", GREEDY, SECOND_BEST,
                            "sampler: greedy keeps the second-best token (#9001)"))
    shas.append(edit_commit(repo, "tools/server/server.cpp", None, "\n// a harmless change after the culprit\n",
                            "server: a comment (#9002)"))
    git(repo, "tag", "b11400", shas[-1])
    return repo, shas


def seed_cache(cache: Path) -> None:
    """The known-good's sdist, from the user's source cache (the build would download it from PyPI)."""
    kept = default_cache_dir() / "archives" / KNOWN_SHA256
    if kept.is_dir():
        shutil.copytree(kept, cache / "archives" / KNOWN_SHA256, dirs_exist_ok=True)


def step(name: str, argv: list[str], env: dict[str, str], results: Path, times: dict) -> int:
    started = time.monotonic()
    code = run_bisect(argv, env, results / f"{name}.txt")  # a builder command, each line stamped
    times[name] = {"seconds": round(time.monotonic() - started, 1), "exit": code}
    print(f"== {name}: exit {code} in {times[name]['seconds']} s", file=sys.stderr)
    return code


def build_lines(transcript: Path) -> list[dict]:
    """The candidate's build line of the watch (`<cell>: built <image> (<digest>) in N s`)."""
    found = []
    for line in transcript.read_text(errors="replace").splitlines():
        match = re.search(r"\] (\S+): (built|up to date) (\S+) \((sha256:[0-9a-f]+)\) in (\d+) s", line)
        if match:
            found.append({"cell": match.group(1), "status": match.group(2), "image": match.group(3),
                          "seconds": int(match.group(5))})
    return found


def ccache_of(log: Path) -> dict:
    from builder.bisect.sourcebuild import parse_ccache
    stats = parse_ccache(log.read_text(errors="replace")) if log.is_file() else None
    return {"hits": stats.hits, "misses": stats.misses} if stats else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/watch-llamacpp-tier4"))
    opts = parser.parse_args()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    results = REPO / "benchmarks" / "results" / "watch-llamacpp-tier4" / stamp
    results.mkdir(parents=True)
    work = opts.work
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    repo, shas = make_history(work)
    (results / "history.txt").write_text(git(repo, "log", "--reverse", "--format=%H %s%d") + "\n")
    binary = registry_binary()
    if binary is None:
        sys.exit("Debian's docker-registry is not installed (apt-get install docker-registry)")
    cache = work / "cache"
    seed_cache(cache)
    registry = start_registry(binary, work / "registry")
    env = {**os.environ, "BUILDER_CACHE": str(cache)}
    reg = ["--registry", registry.host]
    times: dict = {}
    verdicts = work / "verdicts.jsonl"
    started = time.monotonic()
    try:
        for cell in (HELPER_CELL, CELL):
            code = step(f"build-{cell}", ["build", "--cell", cell, "--smoke", "--promote", *reg, "--ca-bundle", CA,
                                          "--find-links", WHEELS, "--workdir", str(work / "build")], env, results, times)
            if code:
                sys.exit(f"{cell} was not built and promoted (exit {code}): see {results}")
        watch = ["watch", "--cell", CELL, "--no-pypi", "--git", f"llama.cpp=file://{repo}", "--build",
                 "--repo", f"llama.cpp={repo}", *reg, "--notify", str(verdicts), "--ca-bundle", CA,
                 "--find-links", WHEELS, "--workdir", str(work / "watch"), "--propose-dir", str(work / "proposals")]
        step("watch-1", watch, env, results, times)
        step("watch-2", watch, env, results, times)
        step("board", ["board", "--cell", CELL, *reg, "--out", str(work / "board")], env, results, times)
    finally:
        stop_registry(registry)
    total = time.monotonic() - started
    docs = [json.loads(line) for line in verdicts.read_text().splitlines()] if verdicts.is_file() else []
    if verdicts.is_file():
        shutil.copy(verdicts, results / "verdicts.jsonl")
    answers = sorted((cache / "bisect" / "results").glob("*.json"))
    answer = json.loads(answers[-1].read_text()) if answers else {}
    (results / "answer.json").write_text(json.dumps(answer, indent=2) + "\n")
    page = work / "board" / "cells" / f"{CELL}.html"
    shown = page.read_text(errors="replace") if page.is_file() else ""
    if page.is_file():
        shutil.copy(page, results / "board-cell.html")
    doc = docs[0] if docs else {}
    candidate_log = work / "watch" / "logs" / f"{doc.get('candidate_cell', '')}.log"
    summary = {
        "history": shas, "culprit": shas[1], "registry": registry.host, "times": times, "total_seconds": round(total, 1),
        "verdict": doc.get("verdict"), "detail": doc.get("detail"),
        "candidate_build": build_lines(results / "watch-1.txt"), "candidate_ccache": ccache_of(candidate_log),
        "bisect": doc.get("bisect"), "recheck": {k: v for k, v in (doc.get("recheck") or {}).items() if k != "reference"},
        "bisect_builds": answer.get("builds_timing", []), "bisect_boots": answer.get("boots"),
        "second_run": (results / "watch-2.txt").read_text(errors="replace").splitlines()[-1:],
        "board_shows_culprit": bool(shas[1][:12] in shown), "load_average": os.getloadavg(), "cpus": os.cpu_count(),
    }
    (results / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print(f"results: {results}", file=sys.stderr)
    first_bad = ((doc.get("bisect") or {}).get("first_bad") or {}).get("sha")
    ok = doc.get("verdict") == "failing" and first_bad == shas[1] and \
        (doc.get("recheck") or {}).get("status") == "confirmed" and "nothing new" in " ".join(summary["second_run"])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

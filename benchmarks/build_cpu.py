"""Benchmark: the cpu cell through build, no-change rebuild, smoke test and promotion.

Targets (issues: build/registry, smoke): a no-change rebuild under 5% of the cold build; promotion
in seconds, independent of image size; smoke wall time from container start to verdict under 60 s.
Also the peak memory (max RSS) of the builder process itself.

    python benchmarks/build_cpu.py [--cold]     # --cold prunes BuildKit's cache first (re-downloads)

Needs a Docker Engine and the base image (scripts/quickstart.sh sets both up); starts its own
registry on a free loopback port, so nothing is pushed anywhere else.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.integration.conftest import registry_binary, start_registry, stop_registry  # noqa: E402

RUN_MEASURED = ("import resource, sys, runpy; sys.argv = ['builder'] + sys.argv[1:]\n"
                "try:\n    runpy.run_module('builder', run_name='__main__')\n"
                "finally:\n    print(f'MAXRSS_KB={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}', file=sys.stderr)")


def builder(*args: str) -> tuple[float, int, str, str]:
    """(seconds, builder's own peak RSS in MiB, stdout, stderr) of one builder command."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", RUN_MEASURED, *args], cwd=REPO, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"builder {' '.join(args)} failed:\n{done.stdout}\n{done.stderr[-2000:]}")
    rss = int(done.stderr.rsplit("MAXRSS_KB=", 1)[1].split()[0]) // 1024
    return seconds, rss, done.stdout, done.stderr


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cold", action="store_true", help="prune BuildKit's cache first")
    options = parser.parse_args()
    if options.cold:
        subprocess.run(["docker", "builder", "prune", "-af"], check=True, capture_output=True)
    extra = ["--ca-bundle", "/etc/ssl/certs/ca-certificates.crt"] if Path("/etc/ssl/certs/ca-certificates.crt").exists() else []
    extra += ["--find-links", "/opt/wheels"] if Path("/opt/wheels").is_dir() else []
    with tempfile.TemporaryDirectory() as tmp:
        registry = start_registry(registry_binary(), Path(tmp) / "registry")
        try:
            common = ["--cell", "vllm-0.32.0-cpu", "--registry", registry.host, "--workdir", f"{tmp}/work", *extra]
            build_s, build_rss, _, _ = builder("build", *common)
            rebuild_s, rebuild_rss, out, _ = builder("build", *common)
            assert "up to date" in out, out
            record = json.loads(Path(f"{tmp}/work/logs/vllm-0.32.0-cpu.json").read_text())
            smoke_s, smoke_rss, out, _ = builder("smoke", record["image"], "--registry", registry.host, "--json",
                                                 "--report-dir", f"{tmp}/reports")
            report = json.loads(out)
            promote_s, promote_rss, _, _ = builder("promote", "vllm-0.32.0-cpu", "--registry", registry.host)
        finally:
            stop_registry(registry)
    print(f"build ({'cold' if options.cold else 'BuildKit cache warm'}), push included: {build_s:.1f} s")
    print(f"no-change rebuild: {rebuild_s:.2f} s ({100 * rebuild_s / build_s:.1f}% of the build)")
    print(f"smoke test (builder smoke, whole command): {smoke_s:.1f} s; container start to ready "
          f"{report['ready_seconds']} s, verdict after {report['total_seconds']} s; decode {report['throughput_tps']:.0f} tok/s")
    print(f"promotion: {promote_s:.2f} s")
    print(f"builder peak RSS (MiB): build {build_rss}, rebuild {rebuild_rss}, smoke {smoke_rss}, promote {promote_rss}")


if __name__ == "__main__":
    main()

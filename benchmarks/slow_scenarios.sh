#!/usr/bin/env bash
# The measurement-heavy scenarios kept out of CI's 25-minute budget (pytest marker `slow`): today the throughput
# bisect (scenario A: a 20 ms injected step sleep found among 8 commits by paired boots, 6-8 min on 2 cores),
# the watch's whole loops (tests/integration/test_watch.py: from an upstream image tag, and from a wheel on a
# package index as a wrong output, a slowdown and a good release: found, built, tested, bisected, re-checked or
# promoted; 10-20 min each) and the generated workflow run end to end by act (build, smoke test, promotion,
# board; about 4 min).
# Same set-up as the test command (dockerd started and stopped, registry binary installed).
set -euo pipefail
cd "$(dirname "$0")/.."
exec bash scripts/test.sh -m slow --run-slow "$@"

#!/usr/bin/env bash
# The measurement-heavy scenarios kept out of CI's 25-minute budget (pytest marker `slow`): today the throughput
# bisect (scenario A: a 20 ms injected step sleep found among 8 commits by paired boots, 6-8 min on 2 cores),
# the watch's whole loop (tests/integration/test_watch.py: found, tested, bisected, re-checked; 10-11 min) and
# the generated workflow run end to end by act (build, smoke test, promotion, board; about 4 min).
# Same set-up as the test command (dockerd started and stopped, registry binary installed).
set -euo pipefail
cd "$(dirname "$0")/.."
exec bash scripts/test.sh -m slow --run-slow "$@"

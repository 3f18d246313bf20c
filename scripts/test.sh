#!/usr/bin/env bash
# The test command (README): installs what the tests need, starts what they need, runs pytest.
# Safe to run on a fresh Debian 12 machine as root; idempotent on a prepared one.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/lib.sh
install_python_deps
install_system_tools
# Real parts for the integration tests: a Docker Engine (started here if it is not running, and
# then stopped at exit) and Debian's registry binary (the tests start their own instances).
trap stop_started_services EXIT
ensure_docker
install_registry

# pytest exits 5 when it collected no test: that is a failure here, never a silent pass.
set +e
python3 -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "error: pytest collected no tests" >&2
    exit 1
fi
exit "$status"

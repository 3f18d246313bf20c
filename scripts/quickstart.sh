#!/usr/bin/env bash
# The main job on a fresh machine (README): install, show the matrix, render an sm_121a context.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
install_python_deps
install_system_tools

echo "== the build matrix =="
builder matrix --explain
echo
echo "== a rendered sm_121a build context (source fetched and verified, patches checked) =="
builder render --cell vllm-0.20.2-cu130-sm_121a --fetch --out build/contexts
ls -la build/contexts/vllm-0.20.2-cu130-sm_121a

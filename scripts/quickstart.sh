#!/usr/bin/env bash
# The main job on a fresh machine (README): set up Docker, a local registry and a local base image,
# then build the cpu vLLM image, push it, smoke-test it with a tiny model, promote it, and show
# the known-good record; then the same for the llama.cpp cpu cell (llama-server built from source; its
# tiny GGUF is made inside the promoted vllm-cpu image). A second run finds both up to date and only
# re-checks them.
# Also shows the matrix and renders an sm_121a build context (its source fetched and verified).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
install_python_deps
install_system_tools
ensure_docker          # left running: the images live there
ensure_registry 5000   # 127.0.0.1:5000, the matrix's default registry; left running

echo "== the build matrix =="
builder matrix --explain
echo
echo "== an sm_121a build context (source fetched and verified, patches checked) =="
builder render --cell vllm-0.20.2-cu130-sm_121a --fetch --out build/contexts

base=$(python3 -c "from builder.matrix.load import load_matrix; print(load_matrix('matrix.yaml').archs['cpu'].bases['wheel'])")
if ! python3 -c "import docker, sys; docker.from_env().images.get(sys.argv[1])" "$base" >/dev/null 2>&1; then
    echo "== a local base image ($base) =="
    builder base create --tag "$base"
fi

# Corporate proxies re-sign TLS: hand pip the host's CA bundle. Air-gapped runners: local wheels.
extra=()
[ -f /etc/ssl/certs/ca-certificates.crt ] && extra+=(--ca-bundle /etc/ssl/certs/ca-certificates.crt)
[ -d /opt/wheels ] && extra+=(--find-links /opt/wheels)
# Promotion signs each image's SBOM, provenance and smoke verdict with this key (made once, mode 0600,
# kept in build/, which git ignores); `builder verify` below checks them with the public half.
key=${BUILDER_SIGNING_KEY_FILE:-build/keys/signing.key}
if [ -z "${BUILDER_SIGNING_KEY:-}" ] && [ ! -f "$key" ]; then
    mkdir -p "$(dirname "$key")"
    builder keys create --out "$key"
fi
export BUILDER_SIGNING_KEY_FILE=$key
echo
echo "== build, push, smoke-test and promote the cpu cell =="
builder build --arch cpu --engine vllm "${extra[@]}" --smoke --promote
echo
# After vLLM's: its promoted image makes the tiny GGUF. The first build compiles llama.cpp (35 min on a
# busy 2-core box); BuildKit's layer cache and a ccache mount make later ones quick.
echo "== build, push, smoke-test and promote the llama.cpp cpu cell =="
builder build --arch cpu --engine llama.cpp --smoke --promote
echo
builder known-good list
if [ -z "${BUILDER_SIGNING_KEY:-}" ]; then
    echo
    echo "== verify each known-good image: signatures, smoke verdict, source, SBOM =="
    for image in $(builder known-good list --json | python3 -c "import json, sys; print(*(r['image'] for r in json.load(sys.stdin)))"); do
        builder verify "$image" --key "${key%.key}.pub"
    done
fi

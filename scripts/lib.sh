# Shared set-up steps for scripts/quickstart.sh, scripts/test.sh and .ci/run (sourced, not run).

log() { echo "[setup] $*" >&2; }

install_python_deps() {
    # The package (editable, so dockerfiles/ and patches/ resolve from the clone) and test tools.
    if ! python3 -c "import builder, pytest, mypy, typer, docker, jinja2, yaml, requests, packaging, huggingface_hub, nvidia, securesystemslib, cryptography" 2>/dev/null \
        || ! command -v syft >/dev/null 2>&1 || ! command -v hadolint >/dev/null 2>&1 || ! command -v zizmor >/dev/null 2>&1 || ! command -v act >/dev/null 2>&1; then
        log "installing Python dependencies"
        python3 -m pip install -q -e ".[test]"
    fi
}

_apt_updated=0
apt_install() {
    # apt_install PACKAGE...: install the Debian packages that are missing.
    local missing=()
    for package in "$@"; do
        dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$_apt_updated" -eq 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        _apt_updated=1
    fi
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_system_tools() {
    # git apply checks patches; curl probes services; debootstrap makes local base images;
    # shellcheck serves actionlint on the generated workflows; chromium (headless) opens the
    # matrix board in its integration test.
    apt_install git patch curl debootstrap shellcheck chromium
}

STATE_DIR=${LLM_FACTORY_STATE:-/var/tmp/llm-factory}
STARTED_PIDS=()

ensure_docker() {
    # Debian's docker.io (Engine 20.10, built-in BuildKit) when no engine is installed; dockerd
    # started in the background when it is not answering, and remembered so that
    # stop_started_services stops only what this script started.
    mkdir -p "$STATE_DIR"
    if ! command -v dockerd >/dev/null 2>&1; then
        apt_install docker.io
    fi
    if docker_up; then
        return 0
    fi
    log "starting dockerd (log $STATE_DIR/dockerd.log)"
    setsid dockerd >>"$STATE_DIR/dockerd.log" 2>&1 </dev/null &
    local pid=$!
    STARTED_PIDS+=("$pid")
    for _ in $(seq 1 60); do
        docker_up && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$STATE_DIR/dockerd.log" >&2
            echo "error: dockerd exited; log $STATE_DIR/dockerd.log" >&2
            return 1
        fi
        sleep 1
    done
    echo "error: dockerd did not answer within 60 s; log $STATE_DIR/dockerd.log" >&2
    return 1
}

docker_up() {
    python3 -c "import docker; docker.from_env(timeout=5).ping()" >/dev/null 2>&1
}

install_registry() {
    # Debian's Distribution registry (2.8); tests start their own instances of it.
    command -v docker-registry >/dev/null 2>&1 || apt_install docker-registry
}

ensure_registry() {
    # A plain registry on 127.0.0.1:PORT (default 5000), data under $STATE_DIR; left running.
    local port=${1:-5000}
    install_registry
    if curl -fsS -o /dev/null --max-time 3 "http://127.0.0.1:$port/v2/" 2>/dev/null; then
        return 0
    fi
    local dir="$STATE_DIR/registry-$port"
    mkdir -p "$dir/data"
    cat >"$dir/config.yml" <<CONFIG
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $dir/data}
  delete: {enabled: true}
http: {addr: "127.0.0.1:$port"}
CONFIG
    log "starting a registry on 127.0.0.1:$port (data $dir/data)"
    setsid docker-registry serve "$dir/config.yml" >>"$dir/registry.log" 2>&1 </dev/null &
    for _ in $(seq 1 30); do
        curl -fsS -o /dev/null --max-time 3 "http://127.0.0.1:$port/v2/" 2>/dev/null && return 0
        sleep 1
    done
    echo "error: the registry did not answer on 127.0.0.1:$port; log $dir/registry.log" >&2
    return 1
}

stop_started_services() {
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
}

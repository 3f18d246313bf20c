# Shared set-up steps for scripts/quickstart.sh, scripts/test.sh and .ci/run (sourced, not run).

log() { echo "[setup] $*" >&2; }

install_python_deps() {
    # The package (editable, so dockerfiles/ and patches/ resolve from the clone) and test tools.
    if ! python3 -c "import builder, pytest, typer, docker, jinja2, yaml, requests, packaging, huggingface_hub" 2>/dev/null \
        || ! command -v hadolint >/dev/null 2>&1; then
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
    # git apply checks patches; GNU patch applies them inside builds.
    apt_install git patch
}

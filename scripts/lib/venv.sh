# Sourced by scripts/demo and scripts/test: make sure commands run in a virtualenv.
#
# Inside an active virtualenv (VIRTUAL_ENV set, or python3 itself a venv's) that
# one is used. Otherwise the project venv .venv is created when missing and put
# first on PATH, so `python`, `pip`, `ruff`, `hadolint` and `moto_server` are its
# own. Works with PIP_REQUIRE_VIRTUALENV=true and on an externally managed
# Python (Debian, Ubuntu), where pip refuses to install outside a venv.
# Expects to run from the repository root.

in_venv() {
    python3 -c 'import sys; sys.exit(0 if sys.prefix != sys.base_prefix else 1)' 2>/dev/null
}

# Debian ships `python3 -m venv` separately (python3.X-venv); install it when missing.
install_python_venv_support() {
    source scripts/lib/apt.sh
    ensure_apt_packages "python3.$(python3 -c 'import sys; print(sys.version_info[1])')-venv"
}

use_project_venv() {
    if [[ -n ${VIRTUAL_ENV:-} ]] || in_venv; then
        return 0
    fi
    if [[ ! -x .venv/bin/python ]]; then
        echo "venv: creating .venv" >&2
        if ! python3 -m venv .venv 2>/dev/null; then
            rm -rf .venv
            install_python_venv_support \
                || { echo "venv: python3 -m venv failed; install python3-venv" >&2; return 1; }
            python3 -m venv .venv
        fi
    fi
    export VIRTUAL_ENV=$PWD/.venv
    export PATH=$VIRTUAL_ENV/bin:$PATH
    hash -r
}

# uv (installs, resolves and locks in seconds) into the active venv when it is missing.
ensure_uv() {
    command -v uv >/dev/null || python3 -m pip install -q 'uv>=0.4'
}

# Sourced by scripts: install Debian packages that are missing (as root, or through sudo).

ensure_apt_packages() {
    local missing=() pkg sudo=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    command -v apt-get >/dev/null || { echo "apt: need ${missing[*]} (no apt-get here)" >&2; return 1; }
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || { echo "apt: need root (or sudo) to install: ${missing[*]}" >&2; return 1; }
        sudo=(sudo)
    fi
    echo "apt: installing ${missing[*]}" >&2
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

#!/usr/bin/env bash
# Install the Debian packages SPMP needs, idempotently.
#
#   scripts/setup-debian.sh                 # the packages listed in scripts/debian-packages.txt
#   scripts/setup-debian.sh PKG...          # these packages (in addition to nothing else)
#   scripts/setup-debian.sh --check         # only report what is missing; exit 1 if anything is
#
# Each package is checked with dpkg-query; apt-get update + apt-get install run only when something
# is missing. Uses sudo only when not root. Set SPMP_SKIP_APT=1 to skip the whole step (for machines
# where the packages are managed another way); missing packages are then reported, not installed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
list_file="${SPMP_DEBIAN_PACKAGES:-$here/debian-packages.txt}"
check_only=0

log() { printf 'setup-debian: %s\n' "$*" >&2; }
die() { printf 'setup-debian: error: %s\n' "$*" >&2; exit 1; }

packages=()
for arg in "$@"; do
    case "$arg" in
        --check) check_only=1 ;;
        -h|--help) sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option $arg" ;;
        *) packages+=("$arg") ;;
    esac
done

if [ "${#packages[@]}" -eq 0 ]; then
    [ -r "$list_file" ] || die "cannot read the package list $list_file"
    while IFS= read -r line || [ -n "$line" ]; do
        line="${line%%#*}"
        line="$(printf '%s' "$line" | tr -d '[:space:]')"
        [ -n "$line" ] && packages+=("$line")
    done < "$list_file"
fi
[ "${#packages[@]}" -gt 0 ] || { log "no packages to check"; exit 0; }

command -v dpkg-query >/dev/null 2>&1 || die "dpkg-query not found: this script needs Debian (or a derivative such as Ubuntu)"

is_installed() {
    local status
    status="$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null || true)"
    [ "${status:0:2}" = "ii" ]
}

missing=()
for pkg in "${packages[@]}"; do
    if ! is_installed "$pkg"; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    log "all ${#packages[@]} Debian package(s) present: ${packages[*]}"
    exit 0
fi

if [ "$check_only" -eq 1 ]; then
    log "missing Debian package(s): ${missing[*]}"
    exit 1
fi
if [ "${SPMP_SKIP_APT:-0}" = "1" ]; then
    log "SPMP_SKIP_APT=1: not installing missing Debian package(s): ${missing[*]} (tests that need them will fail)"
    exit 0
fi

command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install these packages by hand: ${missing[*]}"

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo=(sudo -n)
        if ! sudo -n true 2>/dev/null; then
            # A password prompt needs a terminal; without one, say what to run instead of hanging.
            if [ -t 0 ]; then sudo=(sudo); else
                die "not root and sudo needs a password; run: sudo apt-get install -y ${missing[*]}"
            fi
        fi
    else
        die "not root and sudo is not installed; as root run: apt-get install -y ${missing[*]}"
    fi
fi

export DEBIAN_FRONTEND=noninteractive
log "installing missing Debian package(s): ${missing[*]}"
apt_opts=(-q -o Dpkg::Use-Pty=0)
if ! "${sudo[@]}" apt-get "${apt_opts[@]}" update; then
    die "apt-get update failed (is a Debian mirror reachable?)"
fi
if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y --no-install-recommends "${missing[@]}"; then
    die "apt-get install failed for: ${missing[*]}"
fi

still_missing=()
for pkg in "${missing[@]}"; do
    is_installed "$pkg" || still_missing+=("$pkg")
done
[ "${#still_missing[@]}" -eq 0 ] || die "still not installed after apt-get: ${still_missing[*]}"
log "installed: ${missing[*]}"

#!/usr/bin/env bash
# Create the project's virtual environment and install SPMP into it (editable, with dev extras).
#
#   scripts/setup-venv.sh        # uses $PYTHON (default python3) and $VENV (default .venv)
#
# - Refuses Python older than 3.11 with a clear message.
# - Creates the venv only when missing or broken; on a Debian Python without venv support it
#   installs pythonX.Y-venv through scripts/setup-debian.sh first.
# - Runs `pip install -e '.[dev]'` only when pyproject.toml changed since the last install
#   (a stamp file in the venv holds its hash).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
venv="${VENV:-.venv}"
stamp="$venv/.spmp-install-stamp"

log() { printf 'setup-venv: %s\n' "$*" >&2; }
die() { printf 'setup-venv: error: %s\n' "$*" >&2; exit 1; }

version_ok='import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'

command -v "$python" >/dev/null 2>&1 || die "$python not found: SPMP needs Python 3.11 or newer (on Debian 12: apt-get install python3)"
if ! "$python" -c "$version_ok" 2>/dev/null; then
    found="$("$python" -c 'import sys; print(".".join(map(str, sys.version_info[:3])))' 2>/dev/null || echo unknown)"
    die "SPMP needs Python 3.11 or newer, but $python is $found; set PYTHON=/path/to/python3.11 (make PYTHON=...)"
fi

venv_healthy() {
    [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "$version_ok" 2>/dev/null \
        && "$venv/bin/python" -m pip --version >/dev/null 2>&1
}

if ! venv_healthy; then
    if [ -e "$venv" ]; then
        log "$venv is broken or too old; recreating it"
        rm -rf "$venv"
    fi
    if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
        # Debian's own python3 ships venv/ensurepip in a separate package.
        short="$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
        log "$python has no venv/ensurepip support; installing python$short-venv"
        bash "$root/scripts/setup-debian.sh" "python$short-venv"
    fi
    log "creating $venv with $("$python" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
    "$python" -m venv "$venv" || { rm -rf "$venv"; die "could not create the virtual environment $venv"; }
    venv_healthy || die "the new virtual environment $venv does not work"
fi

want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
have="$(cat "$stamp" 2>/dev/null || true)"
if [ "$want" = "$have" ] && "$venv/bin/python" -c 'import spmp' 2>/dev/null; then
    exit 0
fi
log "installing SPMP and its dev dependencies into $venv (pip install -e '.[dev]')"
rm -f "$stamp"
PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/python" -m pip install -q --progress-bar off -e '.[dev]' \
    || die "pip install -e '.[dev]' failed (is PyPI reachable?)"
printf '%s\n' "$want" > "$stamp"
log "installed"

#!/usr/bin/env bash
# The test command's body: ruff check, ruff format --check, mypy, then pytest.
#
# Every step runs even when an earlier one fails, so pytest's summary line is always printed;
# the exit status is non-zero when any step failed. Extra arguments go to pytest
# (`make test PYTEST_ARGS="-k cli"`).
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bin="${VENV:-.venv}/bin"
lint_paths=(src tests)
[ -d benchmarks ] && lint_paths+=(benchmarks)

failed=()
step() {
    local name="$1"
    shift
    printf '\n==> %s: %s\n' "$name" "$*"
    if "$@"; then
        return 0
    fi
    failed+=("$name")
    printf '==> %s FAILED\n' "$name"
}

step "ruff check" "$bin/ruff" check "${lint_paths[@]}"
step "ruff format" "$bin/ruff" format --check "${lint_paths[@]}"
step "mypy" "$bin/mypy"
step "pytest" "$bin/python" -m pytest -q -p no:cacheprovider "$@"

echo
if [ "${#failed[@]}" -gt 0 ]; then
    printf '==> FAILED: %s\n' "${failed[*]}"
    exit 1
fi
echo "==> all checks passed (ruff check, ruff format, mypy, pytest)"

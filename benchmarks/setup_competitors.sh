#!/usr/bin/env bash
# Create isolated virtual environments for the competitor merging tools.
#
# Usage: benchmarks/setup_competitors.sh [PREFIX]
#   PREFIX defaults to $BENCH_PREFIX or /opt/bench.
#
# Idempotent: an environment whose tool already imports is left alone.
# Each tool lives in its own venv so its pinned tensorflow never touches the
# project's environment:
#   PREFIX/abismal-venv  : abismal==0.0.7 (+ typeguard, which it imports)
#   PREFIX/careless-venv : careless==0.5.4
set -euo pipefail

PREFIX="${1:-${BENCH_PREFIX:-/opt/bench}}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$PREFIX"

make_venv() {
    # $1 venv name, $2 command that must run for the venv to count as ready,
    # remaining args: pip requirements
    local name="$1" check="$2"
    shift 2
    local venv="$PREFIX/$name"
    if [ -x "$venv/bin/python" ] && "$venv/bin/$check" --help >/dev/null 2>&1; then
        echo "[setup] $venv already provides '$check'"
        return 0
    fi
    echo "[setup] creating $venv"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet "$@"
    "$venv/bin/$check" --help >/dev/null
    echo "[setup] $venv ready"
}

make_venv abismal-venv abismal "abismal==0.0.7" typeguard &
pid_a=$!
make_venv careless-venv careless "careless==0.5.4" &
pid_c=$!
status=0
wait "$pid_a" || { echo "[setup] abismal install failed" >&2; status=1; }
wait "$pid_c" || { echo "[setup] careless install failed" >&2; status=1; }
exit "$status"

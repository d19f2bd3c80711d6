#!/usr/bin/env bash
# Set up everything the tests need and run them.
set -euo pipefail
cd "$(dirname "$0")/.."
ICONMAT_EXTRAS="[testing]" bash scripts/setup.sh
export HF_HUB_OFFLINE=1
# pymatting compiles with numba on first import (~40 s): keep the cache between runs
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$PWD/.numba-cache}"
exec .venv/bin/python -m pytest "$@"

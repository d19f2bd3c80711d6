#!/usr/bin/env bash
# Set up napari-iconmat in ./.venv on a fresh machine (idempotent).
# torch==2.13.0 goes in first: it is the CPU wheel on this machine's disk; a plain
# `torch` requirement would otherwise pull a multi-GB CUDA build.
# Each step prints a line before it starts: a fresh machine takes ~2.5 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
step() { echo "setup: $*" >&2; }
if [ ! -x .venv/bin/python ]; then
  step "creating .venv with $("$PYTHON" --version 2>&1)"
  "$PYTHON" -m venv .venv
fi
PIP=".venv/bin/pip --disable-pip-version-check -q"
if ! .venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
  step "installing torch 2.13.0 (CPU; the largest download, about a minute)"
  $PIP install "torch==2.13.0" 2>&1 | grep -v "^WARNING: Location" || true
fi
step "installing napari-iconmat${ICONMAT_EXTRAS:-} and its dependencies (OpenCV, PyAV, pymatting, diffusers, ...)"
$PIP install -e ".${ICONMAT_EXTRAS:-}" 2>&1 | grep -v "^WARNING: Location" || true
step "checking the installation; the first import of pymatting compiles its numba kernels once, ~40 s"
.venv/bin/python -c "import napari_iconmat, torch, cv2, av, pymatting, maxflow" >/dev/null 2>&1 || {
  echo "setup: the package did not install cleanly" >&2; exit 1; }
echo "setup: ready (.venv, torch $(.venv/bin/python -c 'import torch; print(torch.__version__)'))"

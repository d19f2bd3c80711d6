#!/usr/bin/env bash
# Set up everything the tests need and run them.
# On Linux the napari tests need an X server: Xvfb and Qt's xcb libraries are
# installed with apt-get when missing (as root, or through sudo), and
# pytest-xvfb (in the testing extra) starts Xvfb for the session.
set -euo pipefail
cd "$(dirname "$0")/.."

GUI_PACKAGES="xvfb libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0
  libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0 libxcb-cursor0"

missing_gui_packages() {
  local pkg missing=""
  for pkg in $GUI_PACKAGES; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
  done
  echo "$missing"
}

install_gui_packages() {
  [ "$(uname -s)" = "Linux" ] || return 0  # macOS and Windows need no X server
  if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    echo "test: not a Debian-like system: install Xvfb and Qt's xcb libraries yourself ($GUI_PACKAGES)" >&2
    return 0
  fi
  local missing sudo=""
  missing=$(missing_gui_packages)
  [ -n "$missing" ] || return 0
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo="sudo -n"
    else
      echo "test: missing Debian packages:$missing; install them as root (apt-get install$missing)" >&2
      return 1
    fi
  fi
  echo "test: installing$missing"
  # shellcheck disable=SC2086  # word splitting of the package list is intended
  if ! $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >/dev/null; then
    # the package lists may be stale or empty (fresh containers): refresh them once, then retry
    $sudo apt-get update -q >/dev/null
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >/dev/null
  fi
  missing=$(missing_gui_packages)
  if [ -n "$missing" ]; then
    echo "test: could not install$missing" >&2
    return 1
  fi
}

install_gui_packages
ICONMAT_EXTRAS="[testing,napari]" bash scripts/setup.sh
export HF_HUB_OFFLINE=1
# pymatting compiles with numba on first import (~40 s): keep the cache between runs
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$PWD/.numba-cache}"
# the GUI tests fail (rather than skip) when they cannot open a display
export ICONMAT_REQUIRE_GUI=1
exec .venv/bin/python -m pytest "$@"

"""GUI tests need a real X server (Xvfb): ``QT_QPA_PLATFORM=offscreen`` has no OpenGL once a layer is added.

``pytest-xvfb`` (in the ``testing`` extra) starts Xvfb for the session, with the
24-bit screen configured in ``pyproject.toml``. Without a usable display the
tests here are skipped, unless ``ICONMAT_REQUIRE_GUI=1`` (set by
``scripts/test.sh``) turns that into a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

_PROBE = "from qtpy.QtWidgets import QApplication; app = QApplication([]); print(app.platformName())"


def _display_problem() -> str | None:
    try:
        import napari  # noqa: F401
        import qtpy  # noqa: F401
    except ImportError as exc:
        return f"napari or Qt is not installed ({exc}): pip install -e '.[napari]'"
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        return "no X display: install pytest-xvfb and Xvfb, or run under xvfb-run"
    # A missing xcb library aborts the process that creates the QApplication: probe in a child.
    probe = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        return f"Qt cannot open the display {os.environ.get('DISPLAY')}: {probe.stderr.strip().splitlines()[-1:]}"
    return None


_PROBLEM: list = []  # computed once, at the first GUI test: pytest-xvfb sets DISPLAY after this file is imported


@pytest.fixture(autouse=True)
def _needs_display():
    """Skip (or, with ICONMAT_REQUIRE_GUI=1, fail) before anything creates a QApplication."""
    if not _PROBLEM:
        _PROBLEM.append(_display_problem())
    problem = _PROBLEM[0]
    if problem is not None:
        if os.environ.get("ICONMAT_REQUIRE_GUI") == "1":
            pytest.fail(f"GUI tests required but cannot run: {problem}")
        pytest.skip(problem)


def pytest_collection_modifyitems(config, items):
    """With ``-p no:napari`` the ``make_napari_viewer`` fixture does not exist: skip, naming why."""
    if config.pluginmanager.has_plugin("napari"):
        return
    skip = pytest.mark.skip(reason="napari's pytest plugin is disabled (-p no:napari): no make_napari_viewer fixture")
    for item in items:
        if "make_napari_viewer" in getattr(item, "fixturenames", ()):
            item.add_marker(skip)

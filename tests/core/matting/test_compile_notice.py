"""The first matte compiles pymatting's numba kernels (~40 s cold): a note says so, once."""

from __future__ import annotations

import sys
import warnings

import pytest

from napari_iconmat.core.errors import Notice
from napari_iconmat.core.matting import closed_form


def test_cold_cache_is_detected(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    assert not closed_form._kernels_cached()
    (tmp_path / "laplacian_0123").mkdir()
    (tmp_path / "laplacian_0123" / "cf_laplacian._cf_laplacian-5.py311.nbi").write_bytes(b"")
    assert closed_form._kernels_cached()


def test_a_note_before_compiling_and_none_after(monkeypatch):
    import pymatting  # noqa: F401  (already compiled in this process)

    monkeypatch.setattr(closed_form, "_kernels_cached", lambda: False)
    monkeypatch.delitem(sys.modules, "pymatting")
    with pytest.warns(Notice, match="compiling the matting kernels once, ~40 s"):
        closed_form._pymatting()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        closed_form._pymatting()  # imported now: no second note


def test_the_cli_prints_a_notice_as_a_note(capsys):
    from napari_iconmat.cli import _show_warning

    _show_warning(Notice("compiling"), Notice, "f.py", 1)
    _show_warning(UserWarning("replacing"), UserWarning, "f.py", 1)
    assert capsys.readouterr().err.splitlines() == ["iconmat: note: compiling", "iconmat: warning: replacing"]

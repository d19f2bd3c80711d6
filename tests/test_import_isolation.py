"""The package, its core and its CLI import without napari or Qt, and without torch.

Each check runs in a fresh interpreter, so modules imported by other tests do
not hide an import that the package makes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

GUI_PACKAGES = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui")

# Put in front of sys.meta_path: importing any GUI package (or a submodule) then
# fails as if it were not installed, even where it is.
_BLOCKER = textwrap.dedent(
    f"""
    import sys

    BLOCKED = {GUI_PACKAGES!r}

    class _Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{{name}} is blocked by test_import_isolation")
            return None

    sys.meta_path.insert(0, _Blocker())
    """
)


def _run(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON object as its last line."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def _loaded(modules) -> list[str]:
    return sorted({name.split(".")[0] for name in modules} & set(GUI_PACKAGES))


def test_blocker_blocks():
    code = _BLOCKER + textwrap.dedent(
        """
        import json
        failed = []
        for name in BLOCKED:
            try:
                __import__(name)
            except ImportError as exc:
                failed.append("blocked" in str(exc))
        print(json.dumps({"failed": failed}))
        """
    )
    assert _run(code) == {"failed": [True] * len(GUI_PACKAGES)}


@pytest.mark.parametrize(
    "module",
    [
        "napari_iconmat", "napari_iconmat.core", "napari_iconmat.cli", "napari_iconmat._sample_data",
        "napari_iconmat._reader", "napari_iconmat._writer", "napari_iconmat.core.pipeline.keyframes",
        "napari_iconmat.core.pipeline.export", "napari_iconmat.core.io.lazy",
    ],
)  # fmt: skip
def test_imports_without_napari_or_qt(module):
    code = _BLOCKER + textwrap.dedent(
        f"""
        import importlib, json
        importlib.import_module({module!r})
        print(json.dumps({{"gui": sorted({{m.split(".")[0] for m in sys.modules}} & set(BLOCKED))}}))
        """
    )
    assert _run(code) == {"gui": []}


def test_core_import_does_not_load_torch():
    code = """
        import json, sys
        import napari_iconmat.core
        print(json.dumps({"torch": "torch" in sys.modules}))
    """
    assert _run(code) == {"torch": False}


def test_cli_help_does_not_load_torch():
    code = _BLOCKER + textwrap.dedent(
        """
        import contextlib, io, json
        from napari_iconmat.cli import main

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            try:
                status = main(["--help"])
            except SystemExit as exc:
                status = exc.code
        print(json.dumps({
            "status": status or 0,
            "usage": "usage:" in out.getvalue(),
            "torch": "torch" in sys.modules,
        }))
        """
    )
    assert _run(code) == {"status": 0, "usage": True, "torch": False}


def test_plain_matte_run_does_not_import_dask(tmp_path):
    """Without --workers or --scheduler, ``iconmat matte`` (one input or several) never imports dask."""
    code = f"""
        import json, sys
        from napari_iconmat.cli import main
        from napari_iconmat.core.evaluation.synth import write_synth

        sample = write_synth("video", {str(tmp_path / "s")!r}, frames=3, size=(48, 32))
        common = ["--reference-frame", "0", "--mask", str(sample / "reference_mask.png"), "--quiet"]
        one = main(["matte", str(sample / "frames"), "--out", {str(tmp_path / "one")!r}, *common])
        two = main(["matte", str(sample / "frames"), str(sample / "alpha"), "--out", {str(tmp_path / "two")!r}, *common])
        print(json.dumps({{"status": [one, two], "dask": sorted({{m.split(".")[0] for m in sys.modules}} & {{"dask", "distributed"}})}}))
    """
    assert _run(code) == {"status": [0, 0], "dask": []}

"""npe2 ``writers`` contribution: alpha layers written with the engine's writers.

Saving an alpha layer (``(T, H, W)`` or ``(H, W)`` floats in [0, 1]) to

* a folder ``OUT`` writes ``OUT/alpha/NNNNN.png`` (8-bit, or 16-bit with the
  png16 writer), ``OUT/alpha.tif`` (float32 stack) and ``OUT/iconmat-run.json``:
  the layout of ``iconmat matte``;
* a ``.tif`` / ``.tiff`` file writes the float32 stack alone.

All go through :func:`napari_iconmat.core.pipeline.export.export_mattes`. Imports
neither napari nor Qt.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

__all__ = ["write_alpha", "write_alpha_png16", "write_alpha_tiff"]


def _alphas(data: Any, meta: dict):
    import numpy as np

    from .core.errors import InputError

    alphas = np.asarray(data)
    if alphas.ndim == 2:
        alphas = alphas[None]
    name = meta.get("name", "")
    if alphas.ndim != 3 or not np.issubdtype(alphas.dtype, np.floating):
        raise InputError(
            f"layer {name!r} is not an alpha matte: expected (T, H, W) floats in [0, 1], "
            f"got shape {np.shape(data)} and dtype {alphas.dtype}"
        )
    if alphas.size and (np.nanmin(alphas) < 0 or np.nanmax(alphas) > 1):
        raise InputError(
            f"layer {name!r} is not an alpha matte: values must lie in [0, 1], "
            f"got [{np.nanmin(alphas):.3g}, {np.nanmax(alphas):.3g}]"
        )
    return alphas


def _write_folder(path: str, data: Any, meta: dict, formats: tuple[str, ...]) -> list[str]:
    from .core.pipeline.export import export_mattes

    outputs = export_mattes(_alphas(data, meta), path, formats=formats, record={"layer": meta.get("name")})
    written = sorted(str(p) for p in outputs["alpha"].iterdir() if p.suffix == ".png")
    return written + [str(outputs["tiff"])]


def write_alpha(path: str, data: Any, meta: dict) -> list[str]:
    """Write an alpha layer into folder ``path``: ``alpha/NNNNN.png`` (8-bit) and ``alpha.tif``.

    Parameters
    ----------
    path : str
        Output folder (created).
    data : (T, H, W) or (H, W) array-like of float in [0, 1]
    meta : dict
        The layer's attributes; its name goes into the run record.

    Returns
    -------
    list of str
        The files written: the alpha PNGs, then ``alpha.tif``.

    Raises
    ------
    InputError
        The layer is not an alpha matte (not float, values outside [0, 1], not 2-D or 3-D).
    """
    return _write_folder(path, data, meta, ("png", "tiff"))


def write_alpha_png16(path: str, data: Any, meta: dict) -> list[str]:
    """As :func:`write_alpha`, with 16-bit PNGs."""
    return _write_folder(path, data, meta, ("png16", "tiff"))


def write_alpha_tiff(path: str, data: Any, meta: dict) -> list[str]:
    """Write an alpha layer as one float32 (T, H, W) TIFF file ``path`` (``.tif`` or ``.tiff``)."""
    from .core.io.containers import temp_name
    from .core.pipeline.export import export_mattes

    target = Path(os.fspath(path)).expanduser()
    alphas = _alphas(data, meta)
    # The engine's writer assembles OUT/alpha.tif; it is built in a hidden folder, then moved.
    work = temp_name(target)
    try:
        outputs = export_mattes(alphas, work, formats=("tiff",))
        os.replace(outputs["tiff"], target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return [str(target)]

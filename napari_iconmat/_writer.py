"""npe2 ``writers`` contribution: alpha layers written as ``iconmat matte`` writes them.

Saving an alpha layer to ``OUT`` writes ``OUT/alpha/NNNNN.png`` (8-bit, one per
frame), ``OUT/alpha.tif`` (float32 stack) and ``OUT/iconmat-run.json`` through
:func:`napari_iconmat.core.export.export_mattes`. Imports neither napari nor Qt.
"""

from __future__ import annotations

from typing import Any

__all__ = ["write_alpha"]


def write_alpha(path: str, data: Any, meta: dict) -> list[str]:
    """Write an alpha layer: (T, H, W) or (H, W) floats in [0, 1].

    Parameters
    ----------
    path : str
        Output folder (created).
    data : (T, H, W) or (H, W) array-like of float in [0, 1]
    meta : dict
        The layer's attributes (unused but for its name, kept in the run record).

    Returns
    -------
    list of str
        The files written: the alpha PNGs, then ``alpha.tif``.

    Raises
    ------
    InputError
        The layer is not an alpha (not float, values outside [0, 1], not 2-D or 3-D).
    """
    import numpy as np

    from .core.errors import InputError
    from .core.export import export_mattes

    alphas = np.asarray(data)
    if alphas.ndim == 2:
        alphas = alphas[None]
    if alphas.ndim != 3 or not np.issubdtype(alphas.dtype, np.floating):
        raise InputError(
            f"layer {meta.get('name', '')!r} is not an alpha matte: expected (T, H, W) floats in [0, 1], "
            f"got shape {np.shape(data)} and dtype {alphas.dtype}"
        )
    if alphas.size and (np.nanmin(alphas) < 0 or np.nanmax(alphas) > 1):
        raise InputError(
            f"layer {meta.get('name', '')!r} is not an alpha matte: values must lie in [0, 1], "
            f"got [{np.nanmin(alphas):.3g}, {np.nanmax(alphas):.3g}]"
        )
    outputs = export_mattes(alphas, path, formats=("png", "tiff"), record={"layer": meta.get("name")})
    written = sorted(str(p) for p in outputs["alpha"].iterdir() if p.suffix == ".png")
    return written + [str(outputs["tiff"])]

"""Explain maps as heatmap PNGs (``iconmat matte --explain``).

An engine that explains its mattes fills ``FrameMatte.explain`` with named
``(H, W)`` maps (IconMatting: the inter-similarity S and the averaged
intra-similarity, supplement Fig. 3). Each map is written as
``DIR/explain/<name>/NNNNN.png``, min-max scaled per frame and coloured with the
inferno colour map (dark = low, yellow = high).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .io.writers import atomic_write_png

__all__ = ["heatmap", "write_explain_maps"]


def heatmap(values: np.ndarray) -> np.ndarray:
    """``(H, W)`` float map → ``(H, W, 3)`` uint8 RGB heatmap, min-max scaled (a constant map is black).

    Examples
    --------
    >>> heatmap(np.array([[0.0, 1.0]])).shape
    (1, 2, 3)
    """
    values = np.nan_to_num(np.asarray(values, dtype=np.float32))
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    grey = np.rint(scaled * 255.0).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(grey, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)


def write_explain_maps(out_dir, index: int, maps: dict) -> list[Path]:
    """Write each map of one frame as ``out_dir/<name>/<index:05d>.png``; returns the paths."""
    paths = []
    for name, values in maps.items():
        folder = Path(out_dir) / name
        folder.mkdir(parents=True, exist_ok=True)
        paths.append(atomic_write_png(folder / f"{index:05d}.png", heatmap(values)))
    return paths

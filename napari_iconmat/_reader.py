"""npe2 ``readers`` contribution: videos (through PyAV) and folders of images, opened lazily.

A long video opens at once: frames are decoded when napari shows them, with a
small cache (:class:`~napari_iconmat.core.io.lazy.LazyFrames`). Imports neither
napari nor Qt.
"""

from __future__ import annotations

import os
from pathlib import Path

from .core.io.readers import IMAGE_SUFFIXES, VIDEO_SUFFIXES

__all__ = ["napari_get_reader", "read_frames"]


def napari_get_reader(path):
    """Return :func:`read_frames` when ``path`` is a video file or a folder of images, else None (never raises)."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    if not isinstance(path, (str, os.PathLike)):
        return None
    path = Path(os.fspath(path))
    if path.is_dir():
        try:
            has_images = any(p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") for p in path.iterdir())
        except OSError:
            return None
        return read_frames if has_images else None
    return read_frames if path.suffix.lower() in VIDEO_SUFFIXES else None


def read_frames(path) -> list[tuple]:
    """Open a video or an image folder as one lazily decoded (T, H, W[, C]) image layer.

    Returns
    -------
    list of one LayerData tuple
        ``(frames, {"name", "rgb", "contrast_limits", "metadata": {"iconmat_source": path}}, "image")``.

    Raises
    ------
    InputError
        An unreadable video, or a folder of images of different sizes.
    """
    import numpy as np

    from .core.io.lazy import open_lazy

    if isinstance(path, list):
        path = path[0]
    frames = open_lazy(path)
    rgb = frames.ndim == 4 and frames.shape[-1] in (3, 4)
    if np.issubdtype(frames.dtype, np.integer):
        limits = (0, int(np.iinfo(frames.dtype).max))
    else:  # float frames: the first frame's range (napari would read every frame otherwise)
        first = np.asarray(frames[0], np.float64)
        limits = (float(np.nanmin(first)), float(np.nanmax(first)) or 1.0)
    meta = {
        "name": Path(os.fspath(path)).stem or Path(os.fspath(path)).name,
        "rgb": bool(rgb),
        "contrast_limits": limits,
        "metadata": {"iconmat_source": str(path), "fps": frames.fps},
    }
    return [(frames, meta, "image")]

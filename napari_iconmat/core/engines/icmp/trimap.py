"""ICMP's pseudo-trimap: erode and dilate SAM's binary mask by a width relative to the object's size."""

from __future__ import annotations

import cv2
import numpy as np

from ...matting.trimap import band_width

__all__ = ["pseudo_trimap", "disk"]


def disk(radius: int) -> np.ndarray:
    """(2r+1, 2r+1) uint8 structuring element: the pixels within ``radius`` of the centre (Euclidean)."""
    offsets = np.arange(-radius, radius + 1)
    return ((offsets[:, None] ** 2 + offsets[None, :] ** 2) <= radius * radius).astype(np.uint8)


def pseudo_trimap(
    mask: np.ndarray,
    *,
    width: int | None = None,
    fraction: float = 0.05,
    minimum: int = 3,
    maximum: int = 30,
) -> np.ndarray:
    """Trimap from a binary mask: unknown between its erosion and its dilation by a disk.

    Parameters
    ----------
    mask : (H, W) ndarray of bool
    width : int, optional
        Radius of the disk in pixels. Default: ``fraction`` of the square root
        of the mask's area, clipped to [``minimum``, ``maximum``]
        (:func:`napari_iconmat.core.matting.trimap.band_width`).

    Returns
    -------
    trimap : (H, W) ndarray of float32
        1 where the eroded mask is, 0 outside the dilated mask, 0.5 between.
        An empty mask gives all zeros.

    Notes
    -----
    Matte Anything (Yao et al. 2024) builds its trimaps the same way with a
    fixed square kernel; here the disk keeps the band isotropic and its radius
    follows the object so that small and large objects get comparable bands.
    """
    mask = np.asarray(mask, bool)
    if width is None:
        width = band_width(mask, fraction=fraction, minimum=minimum, maximum=maximum)
    width = int(width)
    if width < 0:
        raise ValueError(f"width must be >= 0, got {width}")
    trimap = mask.astype(np.float32)
    if width == 0 or not mask.any():
        return trimap
    kernel = disk(width)
    mask_u8 = mask.astype(np.uint8)
    # pixels outside the image are ignored (OpenCV's default border): an object cut by the
    # frame edge has no boundary there, so it gets no unknown band along the edge
    inner = cv2.erode(mask_u8, kernel) > 0
    outer = cv2.dilate(mask_u8, kernel) > 0
    trimap = inner.astype(np.float32)
    trimap[outer & ~inner] = 0.5
    return trimap

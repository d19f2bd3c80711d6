"""Trimaps from coarse masks: an unknown band whose width follows object size and uncertainty."""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["band_width", "trimap_from_mask"]


def band_width(mask: np.ndarray, *, fraction: float = 0.012, minimum: int = 2, maximum: int = 24) -> int:
    """Half-width in pixels of the unknown band for an object of this size.

    ``fraction`` of the square root of the object's area, clipped to
    [``minimum``, ``maximum``].
    """
    area = float(np.count_nonzero(mask))
    return int(np.clip(round(fraction * np.sqrt(area)), minimum, maximum))


def trimap_from_mask(
    mask: np.ndarray,
    *,
    width: int,
    uncertainty: np.ndarray | None = None,
    wide_width: int | None = None,
) -> np.ndarray:
    """Trimap with an unknown band around the boundary of a binary mask.

    Parameters
    ----------
    mask : (H, W) ndarray of bool
    width : int
        Half-width of the band everywhere along the boundary, in pixels.
    uncertainty : (H, W) ndarray of float in [0, 1], optional
        Where > 0.5 the band widens to ``wide_width`` (uncertain boundaries).
    wide_width : int, optional
        Default ``3 * width``.

    Returns
    -------
    trimap : (H, W) ndarray of float32
        0 = background, 0.5 = unknown, 1 = foreground.
    """
    mask_u8 = mask.astype(np.uint8)
    dist_in = cv2.distanceTransform(mask_u8, cv2.DIST_L2, 3)
    dist_out = cv2.distanceTransform(1 - mask_u8, cv2.DIST_L2, 3)
    dist = np.where(mask, dist_in, dist_out)
    unknown = dist <= width
    if uncertainty is not None:
        wide = wide_width if wide_width is not None else 3 * width
        unknown |= (dist <= wide) & (uncertainty > 0.5)
    trimap = mask.astype(np.float32)
    trimap[unknown] = 0.5
    return trimap

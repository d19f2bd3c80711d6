"""Trimaps: from coarse masks (an unknown band whose width follows object size and uncertainty) and from alphas."""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["band_width", "trimap_from_mask", "trimap_from_alpha"]


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


def trimap_from_alpha(alpha: np.ndarray, *, low: float = 0.02, high: float = 0.98, width: int = 1) -> np.ndarray:
    """The ground-truth-style trimap of an alpha: unknown where low < alpha < high, grown by ``width`` px.

    Returns (H, W) float32 with 0 = background, 0.5 = unknown, 1 = foreground.
    """
    alpha = np.asarray(alpha, np.float32)
    unknown = ((alpha > low) & (alpha < high)).astype(np.uint8)
    if width > 0:
        unknown = cv2.dilate(unknown, np.ones((2 * width + 1, 2 * width + 1), np.uint8))
    trimap = np.where(alpha >= 0.5, 1.0, 0.0).astype(np.float32)
    trimap[unknown > 0] = 0.5
    return trimap

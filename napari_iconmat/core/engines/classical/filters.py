"""Wide image filters in fast forms: the engines' windows are scaled to the object (tens of pixels).

* :func:`wide_gaussian`: local statistics that are smooth at the scale of a wide Gaussian need
  not be computed at full resolution: the array is shrunk by an area average, blurred there and
  grown back bilinearly, a fraction of the cost of a full-size blur with a kernel that wide.
* :func:`within`: dilation by a wide disk as a threshold on the Euclidean distance transform,
  whose cost does not grow with the radius; :func:`nearness`, its linear fall-off.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["nearness", "wide_gaussian", "within"]


def wide_gaussian(array: np.ndarray, sigma: float, *, max_step: int = 4) -> np.ndarray:
    """Gaussian blur of ``array`` ((H, W) or (H, W, C) float32) with standard deviation ``sigma`` px.

    Computed at 1 / step of the size, step = min(sigma // 4, ``max_step``), so that the blur at
    the reduced size is at least 4 px wide (step 1: an ordinary full-size blur). Returns an
    array of the input's shape and dtype.
    """
    h, w = array.shape[:2]
    step = int(np.clip(sigma // 4, 1, max_step))
    if step == 1:
        return cv2.GaussianBlur(array, (0, 0), sigma)
    small_hw = (max(1, h // step), max(1, w // step))
    small = cv2.resize(array, (small_hw[1], small_hw[0]), interpolation=cv2.INTER_AREA)
    blurred = cv2.GaussianBlur(small, (0, 0), sigma / step)
    return cv2.resize(blurred, (w, h), interpolation=cv2.INTER_LINEAR)


def within(mask: np.ndarray, radius: float) -> np.ndarray:
    """Pixels within ``radius`` px (Euclidean) of a ``mask`` pixel: (H, W) bool, the dilation by a disk."""
    outside = (~np.asarray(mask, bool)).astype(np.uint8)
    if outside.all():
        return np.zeros(outside.shape, bool)
    return cv2.distanceTransform(outside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE) <= radius


def nearness(seed: np.ndarray, reach: float, body: np.ndarray) -> np.ndarray:
    """1 on ``seed`` (uint8), falling linearly to 0 at ``reach`` x sqrt(area of ``body``) (at least 4 px) from it."""
    radius = max(4.0, reach * np.sqrt(max(float(body.sum()), 1.0)))
    return np.clip(1.0 - cv2.distanceTransform(1 - seed, cv2.DIST_L2, 3) / radius, 0.0, 1.0)

"""Temporal pieces of video matting: what may be held from the previous frame, and how thin parts move.

Pure numpy / OpenCV functions on working-size arrays; the ``classical`` engine
(:mod:`napari_iconmat.core.engines.classical.engine`) decides where they go in.
"""

from __future__ import annotations

import cv2
import numpy as np

from .filters import wide_gaussian
from .keypoints import rescale_transform
from .segmentation import thin_parts

__all__ = ["unchanged", "carry_thin_parts", "object_motion", "carry_thin_alpha"]


def unchanged(gray: np.ndarray, previous: np.ndarray, tolerance: float, radius: int = 2) -> np.ndarray:
    """How surely each pixel's neighbourhood looks as it did in the previous frame (no motion compensation).

    A small optical flow is not proof that nothing moved: a dense flow is smooth,
    so fur strands or an antenna moving over a still background get the
    background's zero flow. The frame difference itself is the proof.

    Parameters
    ----------
    gray, previous : (H, W) ndarray of uint8
        The frame and its predecessor, grey levels 0..255, same shape.
    tolerance : float
        Grey-level change (after a light blur that averages sensor noise) at which the
        weight has fallen to 1/e; <= 0 returns all ones (no check).
    radius : int
        The largest change within this many pixels counts (matting windows see neighbours).

    Returns
    -------
    (H, W) ndarray of float32 in [0, 1]: 1 = unchanged.
    """
    if tolerance <= 0:
        return np.ones(gray.shape, np.float32)
    change = np.abs(gray.astype(np.float32) - previous.astype(np.float32))
    change = cv2.GaussianBlur(change, (0, 0), 1.0)
    if radius > 0:
        change = cv2.dilate(change, np.ones((2 * radius + 1, 2 * radius + 1), np.uint8))
    return np.exp(-((change / tolerance) ** 2)).astype(np.float32)


def carry_thin_parts(
    prev_mask: np.ndarray,
    prev_gray: np.ndarray,
    gray: np.ndarray,
    flow: np.ndarray,
    carried: np.ndarray,
    confidence: np.ndarray,
    window: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Carry the thin parts of the previous mask with the object they hang on, not with the dense flow.

    A dense flow is smooth over several pixels: on a part 1-4 px wide it follows the
    background around it, so the part is left behind where it was, a ghost. Here the
    flow of the object's solid, confidently tracked pixels is spread to their
    surroundings by normalised convolution (a Gaussian of ``window`` x sqrt(object
    area)) and the thin parts are carried by that object flow; the solid part keeps
    the dense carry. On the carried thin parts the trust is the photometric check
    of the object flow.

    Parameters
    ----------
    prev_mask : (h, w) ndarray of float32 in [0, 1]
        The previous frame's coarse mask.
    prev_gray, gray : (h, w) ndarray of uint8
        The previous and the current frame.
    flow : (h, w, 2) ndarray of float32
        Backward flow: for each pixel now, the offset to where it was.
    carried, confidence : (h, w) ndarray of float32 in [0, 1]
        The dense carry of ``prev_mask`` and its trust.
    window : float
        Window of the object flow, a fraction of sqrt(object area); <= 0 changes nothing.

    Returns
    -------
    carried, confidence : (h, w) ndarray of float32 in [0, 1]
        Unchanged when the mask has no thin part or too few trusted solid pixels.
    """
    inside = (prev_mask > 0.5).astype(np.uint8)
    thin = thin_parts(inside)
    if window <= 0 or not thin.any():
        return carried, confidence
    h, w = gray.shape
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    solid = (inside - thin).astype(np.float32)
    dense_x, dense_y = grid_x + flow[..., 0], grid_y + flow[..., 1]
    solid_now = cv2.remap(solid, dense_x, dense_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    weight = (confidence * (solid_now > 0.5)).astype(np.float32)
    if weight.sum() < 16:
        return carried, confidence
    sigma = max(3.0, window * np.sqrt(float(inside.sum())))
    # the object flow is smooth at the scale of sigma: spread it at a reduced size (speed)
    mass = wide_gaussian(weight, sigma)
    moved = wide_gaussian(flow * weight[..., None], sigma) / (mass[..., None] + 1e-6)
    reached = mass > 1e-3 * float(mass.max())  # too far from any solid pixel: no object flow
    map_x, map_y = grid_x + moved[..., 0], grid_y + moved[..., 1]
    thin_now = cv2.remap(thin.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR) * reached
    warped = cv2.remap(prev_gray, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    error = cv2.GaussianBlur(np.abs(gray.astype(np.float32) - warped.astype(np.float32)), (0, 0), 1.0)
    trust = np.exp(-((error / 20.0) ** 2))
    out = np.maximum(solid_now, thin_now)
    confidence = np.where(thin_now > solid_now, trust, confidence)
    return out.astype(np.float32), confidence.astype(np.float32)


def object_motion(carried: np.ndarray, confidence: np.ndarray, flow: np.ndarray, *, step: int = 3, threshold: float = 1.0):
    """The object's motion as one similarity transform, fitted (RANSAC) to the flow of its solid, trusted pixels.

    Parameters
    ----------
    carried, confidence : (h, w) ndarray of float32 in [0, 1]
        The object carried into this frame and the flow's trust there.
    flow : (h, w, 2) ndarray of float32
        Backward flow: for each pixel now, the offset to where it was.
    step, threshold
        Sampling stride and RANSAC threshold, in pixels.

    Returns
    -------
    (2, 3) ndarray of float64 mapping the previous frame's pixels to this frame's, or None when
    fewer than half of the samples (or fewer than 20) move together: no single motion.
    """
    solid = cv2.erode((carried > 0.5).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    solid &= confidence > 0.5
    ys, xs = np.nonzero(solid[::step, ::step])
    if len(xs) < 20:
        return None
    ys, xs = ys * step, xs * step
    now = np.stack([xs, ys], 1).astype(np.float32)
    before = now + flow[ys, xs]
    matrix, inliers = cv2.estimateAffinePartial2D(before, now, method=cv2.RANSAC, ransacReprojThreshold=threshold)
    if matrix is None or inliers is None or inliers.sum() < max(20, 0.5 * len(xs)):
        return None
    return matrix


def carry_thin_alpha(prev_alpha: np.ndarray, motion: np.ndarray, working_hw, *, level: float = 0.1, grow: int = 2):
    """The thin parts of the previous alpha (antennae, strands), carried by the object's motion.

    A dense flow leaves 1-2 px structures behind, and the graph cut detaches them from the
    body; moved with the whole object instead (:func:`object_motion`), they land where
    the matting solve can find them again.

    Parameters
    ----------
    prev_alpha : (H, W) ndarray of float32 in [0, 1]
        The previous frame's alpha at full size.
    motion : (2, 3) ndarray
        :func:`object_motion`, at working size ``working_hw`` (h, w).
    level : float
        Alpha above which the previous alpha counts as object; its thin parts are what a
        5 x 5 opening removes.
    grow : int
        The region is this many pixels wider than the carried thin parts.

    Returns
    -------
    alpha : (H, W) ndarray of float32 in [0, 1]
        The carried alpha of the thin parts (0 elsewhere).
    region : (H, W) ndarray of bool
        Where they are, ``grow`` pixels wider.
    """
    h, w = prev_alpha.shape
    thin = thin_parts(prev_alpha > level)
    if not thin.any():
        return np.zeros((h, w), np.float32), np.zeros((h, w), bool)
    full = rescale_transform(motion, (h, w), working_hw, working_hw, (h, w))
    near = cv2.dilate(thin, np.ones((3, 3), np.uint8)).astype(np.float32)
    alpha = cv2.warpAffine(prev_alpha * near, full, (w, h), flags=cv2.INTER_LINEAR)
    region = alpha > level
    if grow > 0:
        disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
        region = cv2.dilate(region.astype(np.uint8), disk) > 0
    return alpha.astype(np.float32), region

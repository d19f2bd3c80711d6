"""Motion cue of the classical engine: does a pixel move like the background or like the object?

A tracked object and its background usually move differently (the object moves
on its own, or the camera follows it over a moving background). The camera's
motion is fitted as a homography to the optical flow of the background; a pixel
whose flow the homography explains moves like the background, a pixel whose flow
departs from it as much as the object's does moves like the object. Pure numpy /
OpenCV on working-size arrays.
"""

from __future__ import annotations

import cv2
import numpy as np

from .filters import nearness

__all__ = ["background_motion", "camera_residual", "fit_camera", "motion_evidence", "moves_with_object"]

_STEP = 4  # sampling step of the background flow used to fit the camera motion
_MIN_SAMPLES = 50


def motion_evidence(flow: np.ndarray, carried: np.ndarray, confidence: np.ndarray, *, min_motion: float = 1.0, camera=None) -> np.ndarray | None:
    """Per-pixel evidence in -1..1: +1 moves like the object, -1 moves like the background.

    Parameters
    ----------
    flow : (H, W, 2) float32
        Backward optical flow (for each pixel now, the displacement to where it was before).
    carried : (H, W) float32 in 0..1
        The object mask carried to this frame (what says object and background).
    confidence : (H, W) float32 in 0..1
        Trust in the flow (photometric and forward-backward check); the evidence is scaled by it.
    min_motion : float
        Least typical departure (pixels) of the object's flow from the background's motion for
        the cue to say anything; below it object and background move alike.
    camera : tuple, optional
        :func:`camera_residual` of these arrays, when computed already.

    Returns None where the cue is uninformative: too little reliable background or object,
    no camera-motion fit, or an object that moves like its background.
    """
    fit = camera_residual(flow, carried, confidence, min_motion=min_motion) if camera is None else camera
    if fit is None:
        return None
    residual, noise, moving = fit
    # log-scale step between the background's noise (-1) and the object's typical departure (+1)
    threshold = np.sqrt(noise * moving)
    evidence = np.clip(np.log(np.maximum(residual, 1e-3) / threshold) / np.log(moving / threshold), -1.0, 1.0)
    return (evidence * confidence).astype(np.float32)


def background_motion(evidence: np.ndarray, object_colour: np.ndarray, carried: np.ndarray, *, colour_limit: float = 2.0, reach: float = 0.4) -> np.ndarray:
    """The background half of :func:`motion_evidence` (-1..0), withheld next to the object where colour says object.

    Only the background side is used: flow departs from the camera's motion for
    many reasons besides the object (parallax of near things, flow smoothed across
    the object's edge), but flow the camera's motion explains is background's. Not
    quite: a translucent or fine part of the object (a fin, fur) shows the background
    moving through it. So within ``reach`` x sqrt(object area) of pixels that move
    like the object, the evidence is scaled down where colour calls the pixel object
    (``object_colour`` log-odds, fully withheld at ``colour_limit``). Leaks farther
    away (a look-alike patch left behind) get the full evidence.

    evidence : (H, W) in -1..1 from :func:`motion_evidence`; object_colour : (H, W) colour
    log-odds (the engine passes the larger of the reference's and the local ones);
    carried : (H, W) in 0..1, the carried object mask (for its size).
    """
    background = np.minimum(evidence, 0.0)
    moving = (evidence > 0.0).astype(np.uint8)
    if not moving.any():
        return background.astype(np.float32)
    near = nearness(moving, reach, carried > 0.5)
    protect = near * np.clip(object_colour / colour_limit, 0.0, 1.0)
    return (background * (1.0 - protect)).astype(np.float32)


def moves_with_object(flow: np.ndarray, carried: np.ndarray, confidence: np.ndarray, matrix: np.ndarray | None, gray: np.ndarray, *, reach: float = 0.4, camera=None) -> np.ndarray | None:
    """Evidence in 0..1 that a pixel next to the object moves with it: its flow follows the object's own
    motion and departs from the camera's (the side of a car coming into view as it turns).

    Parameters
    ----------
    flow : (H, W, 2) float32
        Backward optical flow (for each pixel now, the displacement to where it was before).
    carried, confidence : (H, W) float32 in 0..1
        The object mask carried to this frame, and the trust in the flow (the evidence is scaled by it).
    matrix : (2, 3) ndarray or None
        The object's motion, previous frame to this one
        (:func:`~napari_iconmat.core.engines.classical.temporal.object_motion`); None = no single motion.
    gray : (H, W) uint8
        The frame: only where its texture pins the flow down in both directions (corners, not
        the straight edge of a rail, along which any motion fits) is the flow taken as evidence.
    reach : float
        Only within ``reach`` x sqrt(object area) of the carried object: new parts of an object
        come into view next to the parts already seen.
    camera : tuple, optional
        :func:`camera_residual` of these arrays, when computed already.

    Returns None where the cue is uninformative (no object motion, no camera fit, or an object
    that moves like its background).
    """
    if matrix is None:
        return None
    fit = camera_residual(flow, carried, confidence) if camera is None else camera
    if fit is None:
        return None
    residual, noise, moving = fit
    h, w = carried.shape
    grid = _pixel_grid(h, w)
    inverse = cv2.invertAffineTransform(matrix)
    before = grid @ inverse[:, :2].T.astype(np.float32) + inverse[:, 2].astype(np.float32)
    object_residual = np.hypot(*(flow - (before - grid)).transpose(2, 0, 1))
    threshold = np.sqrt(noise * moving)
    departs = np.clip(np.log(np.maximum(residual, 1e-3) / threshold) / np.log(moving / threshold), 0.0, 1.0)
    follows = np.clip(1.0 - object_residual / threshold, 0.0, 1.0)
    near = nearness((carried > 0.5).astype(np.uint8), reach, carried > 0.5)
    corners = cv2.cornerMinEigenVal(gray, 5)
    pinned = np.clip(corners / max(float(np.percentile(corners, 95)) * 0.1, 1e-6), 0.0, 1.0)
    return (departs * follows * near * pinned * confidence).astype(np.float32)


def fit_camera(flow: np.ndarray, carried: np.ndarray, confidence: np.ndarray) -> np.ndarray | None:
    """The camera's motion: a (3, 3) homography, fitted (RANSAC) to the background's flow, taking each
    pixel now to where it was before; None where too little reliable background or object is seen.

    Arguments as :func:`motion_evidence`."""
    h, w = carried.shape
    reliable = confidence > 0.5
    background = (carried < 0.05) & reliable
    sample = np.zeros((h, w), bool)
    sample[::_STEP, ::_STEP] = True
    ys, xs = np.nonzero(background & sample)
    if len(xs) < _MIN_SAMPLES or ((carried > 0.95) & reliable).sum() < _MIN_SAMPLES:
        return None
    now = np.stack([xs, ys], axis=1).astype(np.float32)
    homography, _ = cv2.findHomography(now, now + flow[ys, xs], cv2.RANSAC, 1.0)
    return homography


def camera_residual(flow: np.ndarray, carried: np.ndarray, confidence: np.ndarray, *, min_motion: float = 1.0, homography=None):
    """How each pixel departs from the camera's motion (:func:`fit_camera`, or ``homography`` when fitted already).

    Arguments as :func:`motion_evidence`. Returns ``(residual, noise, moving)``: the (H, W) float
    departure in pixels, the background's median departure and the object's; or None where that
    says nothing (too little reliable background or object, no fit, or an object that moves like
    its background: ``moving`` below ``min_motion`` or 3 x ``noise``)."""
    if homography is None:
        homography = fit_camera(flow, carried, confidence)
    if homography is None:
        return None
    h, w = carried.shape
    reliable = confidence > 0.5
    background = (carried < 0.05) & reliable
    obj = (carried > 0.95) & reliable
    grid = _pixel_grid(h, w)
    predicted = cv2.perspectiveTransform(grid.reshape(-1, 1, 2), homography).reshape(h, w, 2) - grid
    # a degenerate fit can send points to infinity: such pixels are simply "not background"
    residual = np.nan_to_num(np.hypot(*(flow - predicted).transpose(2, 0, 1)), nan=np.inf)
    noise = max(float(np.median(residual[background])), 0.1)
    moving = float(np.median(residual[obj]))
    if not np.isfinite(moving) or not np.isfinite(noise) or moving < max(min_motion, 3.0 * noise):
        return None
    return residual, noise, moving


def _pixel_grid(h: int, w: int) -> np.ndarray:
    """(h, w, 2) float32 pixel coordinates (x, y)."""
    return np.stack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)), axis=-1)


"""Background memory of the classical engine: what the background looked like where it was seen.

As the object moves it uncovers and covers the background. Every frame shows most of the
background, away from the object; the engine keeps those colours, moved along with the
camera (the homography fitted to the background's flow), in a memory of the scene behind
the object. A pixel that looks now exactly as the background looked at that place before
is background, however much its colour resembles the object's: this stops a track from
creeping onto a look-alike patch it passes (a pale stone basin beside a pale dress, a fence of the
horse's colour). A pixel that looks different is, far from the object, nothing to go by:
its shadow, a reflection, a background that changed or moved other than the camera (water,
parallax); next to the object, a clear change is a part of it in front of the background
(:func:`background_change`: a limb swung out over the ground).
Pure numpy / OpenCV on working-size arrays.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

from .filters import nearness

__all__ = ["BackgroundMemory", "background_change", "background_match", "recall", "remember"]


class BackgroundMemory(NamedTuple):
    """The remembered background at working size: its Lab colours and how surely each pixel was seen (0..1)."""

    lab: np.ndarray  # (h, w, 3) float32 CIE Lab
    seen: np.ndarray  # (h, w) float32 in 0..1; 0 = never seen (behind the object since the reference)


def _away_from(mask: np.ndarray, margin: float) -> np.ndarray:
    """Pixels farther than ``margin`` x sqrt(area) (at least 2 px) from ``mask`` (h, w; > 0.5 = object)."""
    inside = mask > 0.5
    radius = max(2.0, margin * np.sqrt(max(float(inside.sum()), 1.0)))
    distance = cv2.distanceTransform((~inside).astype(np.uint8), cv2.DIST_L2, 3)
    return distance > radius


def remember(lab: np.ndarray, mask: np.ndarray, recalled: BackgroundMemory | None = None, *, margin: float = 0.1, fade: float = 0.99) -> BackgroundMemory:
    """The memory after a frame: its colours where it shows background away from the object, else the recalled ones.

    Parameters
    ----------
    lab : (h, w, 3) float32
        The frame in CIE Lab at working size.
    mask : (h, w) float in 0..1
        The frame's object mask (> 0.5 = object).
    recalled : BackgroundMemory, optional
        The memory moved to this frame (:func:`recall`); None starts one (at the reference).
    margin : float
        Only pixels farther than this x sqrt(object area) from the object are stored: its edge,
        a part the cut missed next to it, or its shadow are not background to remember.
    fade : float
        Factor on the sureness of remembered pixels not seen this frame: each camera move
        resamples them. A scene that changed while hidden needs no fading: it no longer matches.
    """
    away = _away_from(mask, margin)
    if recalled is None:
        return BackgroundMemory(np.where(away[..., None], lab, 0.0).astype(np.float32), away.astype(np.float32))
    stored = cv2.copyTo(lab, away.astype(np.uint8), recalled.lab.copy())
    seen = fade * recalled.seen
    seen[away] = 1.0
    return BackgroundMemory(stored, seen)


def recall(memory: BackgroundMemory, homography: np.ndarray | None) -> BackgroundMemory | None:
    """The memory moved with the camera to the next frame; None without a camera fit.

    ``homography`` (3, 3) takes each pixel of the next frame to where it was in the memory's
    frame (:func:`~napari_iconmat.core.engines.classical.motion.fit_camera`). Pixels that come
    into view from outside the frame are unseen.
    """
    if homography is None:
        return None
    h, w = memory.seen.shape
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    lab = cv2.warpPerspective(memory.lab, homography, (w, h), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    seen = cv2.warpPerspective(memory.seen, homography, (w, h), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return BackgroundMemory(lab.astype(np.float32), np.clip(seen, 0.0, 1.0).astype(np.float32))


def background_match(lab: np.ndarray, recalled: BackgroundMemory, *, tolerance: float = 10.0, radius: int = 2) -> np.ndarray:
    """Evidence in 0..1 that a pixel is the remembered background: 1 where its neighbourhood looks as the
    background there looked, falling to 0 at a mean colour difference of ``tolerance`` (CIE Lab ΔE 10, a
    difference anyone sees side by side; smaller ones are what video compression and the resampling
    of a moving camera leave on textured ground).

    lab : (h, w, 3) float32, the frame; recalled : :func:`recall` of the memory to this frame;
    radius : the (2 radius + 1)^2 window over which the difference is averaged (texture, not one colour).
    """
    difference, seen = _difference(lab, recalled, radius)
    return (np.clip(1.0 - difference / tolerance, 0.0, 1.0) * seen).astype(np.float32)


def background_change(lab: np.ndarray, recalled: BackgroundMemory, carried: np.ndarray, *, reach: float = 0.4, tolerance: float = 10.0, radius: int = 2, lightness: float = 0.25) -> np.ndarray:
    """Evidence in 0..1 that something stands, next to the object, in front of the background seen there:
    the object's parts that moved onto seen background (a limb swung out over the ground).

    0 up to a mean colour difference of 2 x ``tolerance``, 1 from 3 x, where lightness counts
    ``lightness`` as much as the colour (a shadow darkens the ground without changing its hue);
    only within ``reach`` x sqrt(object area) of the ``carried`` object ((h, w) in 0..1): farther
    away a change is someone else, water, a light going on.
    """
    difference, seen = _difference(lab, recalled, radius, lightness)
    near = nearness((carried > 0.5).astype(np.uint8), reach, carried > 0.5)
    return (np.clip(difference / tolerance - 2.0, 0.0, 1.0) * seen * near).astype(np.float32)


def _difference(lab: np.ndarray, recalled: BackgroundMemory, radius: int, lightness: float = 1.0):
    """Windowed mean Lab difference to the recalled background, and where the whole window was seen."""
    size = 2 * radius + 1
    step = cv2.subtract(lab, recalled.lab)
    # the weighted sum of the three squared steps in one OpenCV pass (six times numpy's time otherwise)
    difference = cv2.sqrt(cv2.transform(cv2.multiply(step, step), np.array([[lightness, 1.0, 1.0]], np.float32)))
    return cv2.blur(difference, (size, size)), cv2.erode(recalled.seen, np.ones((size, size), np.uint8))

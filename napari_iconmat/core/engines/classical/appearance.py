"""Colour appearance model of the object and its background.

Foreground and background are each described by a smoothed 3-D histogram of
CIE Lab colours (OpenCV's 8-bit Lab: L, a, b each in 0..255). Lightness gets
fewer bins than the two chroma axes, so that a lighting change moves a colour
across fewer bins. The likelihood ratio of the two histograms gives, for every
pixel, the log-odds that its colour belongs to the object.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter

__all__ = ["ColourModel", "lab_bins", "fit_colour_model"]

L_BINS, AB_BINS = 16, 40


def lab_bins(rgb: np.ndarray) -> np.ndarray:
    """Histogram bin index of every pixel.

    Parameters
    ----------
    rgb : (H, W, 3) ndarray of float32 in [0, 1]

    Returns
    -------
    (H, W) ndarray of int32 in [0, L_BINS * AB_BINS**2)
    """
    lab = cv2.cvtColor((rgb * 255.0 + 0.5).astype(np.uint8), cv2.COLOR_RGB2LAB)
    l_idx = (lab[..., 0].astype(np.int32) * L_BINS) >> 8
    a_idx = (lab[..., 1].astype(np.int32) * AB_BINS) >> 8
    b_idx = (lab[..., 2].astype(np.int32) * AB_BINS) >> 8
    return (l_idx * AB_BINS + a_idx) * AB_BINS + b_idx


def _histogram(bins: np.ndarray, weights: np.ndarray) -> np.ndarray:
    hist = np.bincount(bins.ravel(), weights=weights.ravel(), minlength=L_BINS * AB_BINS * AB_BINS)
    hist = gaussian_filter(hist.reshape(L_BINS, AB_BINS, AB_BINS), sigma=(0.6, 0.8, 0.8), mode="constant")
    total = hist.sum()
    return (hist / total if total > 0 else hist).astype(np.float32)


class ColourModel:
    """Foreground and background colour histograms.

    Parameters
    ----------
    foreground, background : (L_BINS, AB_BINS, AB_BINS) ndarray of float32
        Normalised histograms.
    """

    def __init__(self, foreground: np.ndarray, background: np.ndarray):
        self.foreground = foreground
        self.background = background

    def log_odds(self, bins: np.ndarray, *, limit: float = 4.0, novelty: float = 0.1) -> np.ndarray:
        """Per-pixel log(p(colour | object) / p(colour | background)), clipped to +-limit.

        The background density is mixed with a uniform one (weight ``novelty``):
        a colour seen in neither model is more likely new background than object,
        whose colours the reference describes well.
        """
        eps = 1e-7
        uniform = 1.0 / self.background.size
        background = (1.0 - novelty) * self.background.ravel() + novelty * uniform
        table = np.log(self.foreground.ravel() + eps) - np.log(background + eps)
        np.clip(table, -limit, limit, out=table)
        return table[bins]

    def with_scene(self, bins: np.ndarray, weight: float = 0.5) -> "ColourModel":
        """A copy whose background also covers the colours of a new scene.

        For an image with no temporal neighbour the reference's background may
        be unrelated; the image's own colour histogram is a fair background
        estimate there, since the object covers a minor part of it.
        """
        scene = _histogram(bins, np.ones(bins.shape, np.float32))
        return ColourModel(self.foreground, (1 - weight) * self.background + weight * scene)

    def blend(self, other: "ColourModel", weight: float) -> "ColourModel":
        """(1 - weight) * self + weight * other."""
        return ColourModel(
            (1 - weight) * self.foreground + weight * other.foreground,
            (1 - weight) * self.background + weight * other.background,
        )


def fit_colour_model(bins: np.ndarray, foreground: np.ndarray, background: np.ndarray) -> ColourModel | None:
    """Histograms of the pixels marked in two boolean maps; None if either is empty."""
    if not foreground.any() or not background.any():
        return None
    return ColourModel(
        _histogram(bins[foreground], np.ones(int(foreground.sum()), np.float32)),
        _histogram(bins[background], np.ones(int(background.sum()), np.float32)),
    )


def rotate_hue(histogram: np.ndarray, degrees: float) -> np.ndarray:
    """A Lab histogram with every colour's hue turned by ``degrees`` about the grey axis.

    Hue is the angle in the (a, b) chroma plane; lightness and chroma are kept. The
    result is renormalised to sum 1 (mass turned beyond the histogram's range is lost).
    """
    centre = 128 * AB_BINS / 256 - 0.5  # a = b = 128 (grey) in bin-centre coordinates
    matrix = cv2.getRotationMatrix2D((centre, centre), float(degrees), 1.0)
    turned = np.stack([cv2.warpAffine(np.ascontiguousarray(s), matrix, (AB_BINS, AB_BINS), flags=cv2.INTER_LINEAR) for s in histogram])
    total = float(turned.sum())
    return (turned / total if total > 0 else turned).astype(np.float32)


def hue_tolerant(histogram: np.ndarray, degrees: float, step: float = 10.0) -> np.ndarray:
    """The mean of ``histogram`` turned by every hue within +-``degrees`` (in ``step`` steps).

    A colour model of an object category whose instances come in other hues
    (same-category variants, a colour cast), with lightness and chroma kept.
    """
    count = max(1, int(np.ceil(degrees / step)))
    angles = np.linspace(-degrees, degrees, 2 * count + 1)
    return (sum(rotate_hue(histogram, a) for a in angles) / len(angles)).astype(np.float32)

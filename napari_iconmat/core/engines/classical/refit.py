"""Self-fitted colour models for images with no temporal neighbour (GrabCut-style refitting).

In a collection the object can come with other colours than the reference's (a same-category
variant, another light), so the reference's colour model only gives a first, rough cut. The
image's own colours inside and around that cut then say what the object looks like *here*: a
colour model fitted on them, blended with the reference's, gives a second cut, and so on.
"""

from __future__ import annotations

import cv2
import numpy as np

from .appearance import ColourModel, fit_colour_model
from .segmentation import enclosed_background, graph_cut, select_object

__all__ = ["refit_segmentation", "holes", "fill_holes_like"]


def _core_and_outside(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels surely inside (eroded) and surely outside (beyond a dilation) a mask, by ~3% of its size."""
    mask_u8 = mask.astype(np.uint8)
    r = int(np.clip(0.03 * np.sqrt(mask_u8.sum()), 1, 6))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    core = cv2.erode(mask_u8, kernel) > 0
    if core.sum() < 16:
        core = mask.astype(bool)
    return core, cv2.dilate(mask_u8, kernel) == 0


def refit_segmentation(
    rgb: np.ndarray,
    bins: np.ndarray,
    mask: np.ndarray,
    prior: ColourModel,
    other: np.ndarray | float,
    *,
    colour_weight: float,
    smoothness,
    area_fraction: float,
    touches_border: bool,
    blend: float = 0.5,
    rounds: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Re-cut an image with colour models fitted on its own current segmentation.

    Parameters
    ----------
    rgb : (h, w, 3) float32 in [0, 1], bins : (h, w) int32 (:func:`~napari_iconmat.core.engines.classical.appearance.lab_bins`)
    mask : (h, w) bool, the first cut (not empty)
    prior : ColourModel
        The reference's model as used for the first cut; each refitted model is
        ``prior.blend(own, blend)``, so the reference keeps a say.
    other : (h, w) float32 or 0
        The non-colour log-odds of the first cut (carried alpha, distance penalty), added unchanged.
    colour_weight, smoothness
        As for the first cut.
    area_fraction, touches_border
        Of the reference object (:func:`~napari_iconmat.core.engines.classical.segmentation.select_object`).
    rounds : int
        Refits at most; stops early when the cut no longer changes or would vanish.

    Returns
    -------
    mask : (h, w) bool; log_odds : (h, w) float32 of the last cut
    """
    log_odds = None
    for _ in range(rounds):
        core, outside = _core_and_outside(mask)
        own = fit_colour_model(bins, core, outside)
        if own is None:
            break
        log_odds = (colour_weight * prior.blend(own, blend).log_odds(bins) + other).astype(np.float32)
        cut = graph_cut(rgb, log_odds, smoothness)
        # the object is where the first cut found it: components away from it are other things
        count, labels = cv2.connectedComponents(cut.astype(np.uint8), connectivity=8)
        touching = np.bincount(labels[mask & cut], minlength=count) > 0
        touching[0] = False
        cut = touching[labels]
        if not cut.any():
            break
        cut = select_object(cut, log_odds, area_fraction, touches_border)
        if np.array_equal(cut, mask):
            break
        mask = cut
    return mask, log_odds


def holes(mask: np.ndarray) -> np.ndarray:
    """(h, w) bool: background pixels enclosed by ``mask`` (4-connected, not reaching the border)."""
    labels, enclosed = enclosed_background(mask)
    return enclosed[labels]


def fill_holes_like(mask: np.ndarray, reference: np.ndarray, tolerance: float = 0.01, thin: float = 0.03) -> np.ndarray:
    """``mask`` with its holes filled when the reference object has none (none above ``tolerance`` of its area).

    A hole-free reference object is hole-free in other images too; holes there are object
    parts whose colour the model does not know (markings, eyes, shadows). The reference is
    judged on its thick parts (opened by a disk of ``thin`` x sqrt(area)): the gaps between
    fur strands or hairs of a mask are no holes of the object.
    """
    radius = int(round(thin * np.sqrt(max(int(reference.sum()), 1))))
    if radius >= 1:
        disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        reference = cv2.morphologyEx(reference.astype(np.uint8), cv2.MORPH_OPEN, disk) > 0
    ref_holes = holes(reference)
    if ref_holes.sum() > tolerance * max(int(reference.sum()), 1):
        return mask
    return mask | holes(mask)

"""How sure the classical engine is that the object is where its matte says.

Each cue is a number in [0, 1]; a frame's confidence is the weakest of them,
so one failing cue is enough to say "unsure":

* **colour**: the matte's colours against the reference object's, as the
  Bhattacharyya coefficient of their Lab histograms (1 = the same colours),
  turned into [0, 1] around ``colour_match`` (0.5 there);
* **keypoints** (frames without a temporal neighbour): a similarity transform
  fitted to SIFT matches of the reference's object placed it (0.5 from the
  fewest inliers, 1 from 30);
* **flow** (frames of a sequence): how well the optical flow explains the
  image over the carried object (the photometric and forward-backward checks);
* **size**: the area against the previous frame's (1 = unchanged, 0.5 at
  twice or half).

An empty matte has confidence 0: the object is not there.
"""

from __future__ import annotations

import math

import numpy as np

from .appearance import fit_colour_model

__all__ = ["colour_similarity", "colour_confidence", "keypoint_confidence", "size_confidence", "flow_confidence"]

# width of the colour cue's logistic around ``colour_match``, in Bhattacharyya-coefficient units
_COLOUR_SLOPE = 0.04


def colour_similarity(bins: np.ndarray, mask: np.ndarray, reference_foreground: np.ndarray) -> float:
    """Bhattacharyya coefficient (0..1) of the colours under ``mask`` and the reference object's.

    Parameters
    ----------
    bins : (h, w) int32
        :func:`~napari_iconmat.core.engines.classical.appearance.lab_bins` of the frame.
    mask : (h, w) bool
        The matte's object pixels.
    reference_foreground : (L, A, B) float32
        The reference's normalised object histogram.
    """
    if not mask.any() or mask.all():
        return 0.0
    model = fit_colour_model(bins, mask, ~mask)
    return float(np.sqrt(np.clip(model.foreground, 0, None) * np.clip(reference_foreground, 0, None)).sum())


def colour_confidence(similarity: float, colour_match: float) -> float:
    """The colour cue in [0, 1]: 0.5 at ``colour_match``, towards 1 above it and 0 below."""
    return float(1.0 / (1.0 + math.exp(-(similarity - colour_match) / _COLOUR_SLOPE)))


def keypoint_confidence(inliers: int) -> float:
    """The keypoint cue of a placed reference: 0.5 at the fewest inliers, 1 from 30."""
    return float(0.5 + 0.5 * min(1.0, inliers / 30.0))


def size_confidence(area: float, previous_area: float) -> float:
    """exp(-|ln(area / previous_area)|): 1 for the same area, 0.5 at twice or half."""
    if area <= 0 or previous_area <= 0:
        return 0.0
    return float(math.exp(-abs(math.log(area / previous_area))))


def flow_confidence(flow_check: np.ndarray, carried: np.ndarray) -> float:
    """Mean of the flow's per-pixel check (0..1) over the carried object (carried > 0.5); 0 without one."""
    inside = carried > 0.5
    if not inside.any():
        return 0.0
    return float(np.clip(flow_check[inside].mean(), 0.0, 1.0))

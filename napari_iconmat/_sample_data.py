"""npe2 ``sample_data`` contribution: a synthetic video with its exact alpha.

Returns plain LayerData tuples, so this module imports neither napari nor Qt.
"""

from __future__ import annotations

import numpy as np

__all__ = ["sample_sequence"]


def sample_sequence() -> list[tuple]:
    """A 16-frame synthetic sequence (320x180) and its ground-truth alpha.

    Returns
    -------
    list of LayerData tuples
        ``(frames, {"name": "iconmat sample"}, "image")`` with frames a
        (T, H, W, 3) uint8 array, and ``(alpha, {"name": "ground-truth alpha",
        "visible": False}, "image")`` with alpha a (T, H, W) float32 array in [0, 1].
        Frame 0 is the reference (see :data:`napari_iconmat.core.evaluation.synth.REFERENCE_FRAME`).
    """
    from .core.evaluation.synth import synth_video

    frames = list(synth_video(n_frames=16, size=(320, 180), seed=0))
    images = np.stack([f.image for f in frames])
    alpha = np.stack([f.alpha for f in frames]).astype(np.float32)
    return [
        (images, {"name": "iconmat sample"}, "image"),
        (alpha, {"name": "ground-truth alpha", "visible": False}, "image"),
    ]

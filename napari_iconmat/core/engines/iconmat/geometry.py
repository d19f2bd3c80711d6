"""Images of any size to the network's square input, and alphas back to the exact original geometry.

Two fits:

- ``'crop'`` (the released one): the centred square of side ``min(H, W)``,
  resized to ``S × S``. The alpha comes back inside that square only; pixels
  outside it get alpha 0 (the released evaluation instead stretched the square
  prediction over the whole image, which misplaces every pixel of a non-square
  image).
- ``'letterbox'``: the whole image resized so that its longer side is ``S``
  (aspect ratio kept) and centred on an ``S × S`` canvas padded with mid-grey.
  The alpha is read from the image's box only and resized back to ``(H, W)``:
  every output pixel corresponds to the same place in the image.

Torch-free (numpy + OpenCV).
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["FITS", "SquareFit"]

FITS = ("letterbox", "crop")

_INTERPOLATION = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "nearest": cv2.INTER_NEAREST, "cubic": cv2.INTER_CUBIC}


def _resize(array: np.ndarray, height: int, width: int, interpolation: str) -> np.ndarray:
    if array.shape[:2] == (height, width):
        return array.copy()
    if interpolation == "auto":
        shrinking = height * width < array.shape[0] * array.shape[1]
        flag = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    else:
        flag = _INTERPOLATION[interpolation]
    out = cv2.resize(array, (width, height), interpolation=flag)
    if array.ndim == 3 and out.ndim == 2:
        out = out[..., None]
    return out


class SquareFit:
    """The mapping between an ``(H, W)`` image and the ``S × S`` network input.

    Parameters
    ----------
    shape : (H, W)
        The original image's height and width.
    side : int
        ``S``, the network resolution.
    mode : {'letterbox', 'crop'}
        See the module docstring.

    Attributes
    ----------
    source_box : (top, left, height, width)
        The part of the original image that is used (the whole image for letterbox).
    target_box : (top, left, height, width)
        Where that part lies in the square.
    """

    def __init__(self, shape, side: int, mode: str = "letterbox") -> None:
        if mode not in FITS:
            raise ValueError(f"fit must be one of {FITS}, got {mode!r}")
        height, width = int(shape[0]), int(shape[1])
        if height < 1 or width < 1:
            raise ValueError(f"image shape must be positive, got {shape}")
        self.shape = (height, width)
        self.side = int(side)
        self.mode = mode
        if mode == "crop":
            c = min(height, width)
            self.source_box = ((height - c) // 2, (width - c) // 2, c, c)
            self.target_box = (0, 0, self.side, self.side)
        else:
            scale = self.side / max(height, width)
            h = min(self.side, max(1, int(round(height * scale))))
            w = min(self.side, max(1, int(round(width * scale))))
            self.source_box = (0, 0, height, width)
            self.target_box = ((self.side - h) // 2, (self.side - w) // 2, h, w)

    def to_square(self, array: np.ndarray, *, interpolation: str = "auto", fill: float = 0.5) -> np.ndarray:
        """``(H, W[, C])`` → ``(S, S[, C])`` float32; letterbox padding is ``fill``."""
        array = np.asarray(array, dtype=np.float32)
        if array.shape[:2] != self.shape:
            raise ValueError(f"array must have shape {self.shape}, got {array.shape[:2]}")
        st, sl, sh, sw = self.source_box
        tt, tl, th, tw = self.target_box
        part = _resize(array[st : st + sh, sl : sl + sw], th, tw, interpolation)
        out = np.full((self.side, self.side, *array.shape[2:]), fill, np.float32)
        out[tt : tt + th, tl : tl + tw] = part
        return out

    def from_square(self, array: np.ndarray, *, interpolation: str = "linear", outside: float = 0.0) -> np.ndarray:
        """``(S, S)`` → ``(H, W)`` float32 in the original geometry.

        Pixels of the original image that the square does not show (outside the
        centre crop) get ``outside``.
        """
        array = np.asarray(array, dtype=np.float32)
        if array.shape[:2] != (self.side, self.side):
            raise ValueError(f"array must be {self.side}x{self.side}, got {array.shape[:2]}")
        st, sl, sh, sw = self.source_box
        tt, tl, th, tw = self.target_box
        part = _resize(np.ascontiguousarray(array[tt : tt + th, tl : tl + tw]), sh, sw, interpolation)
        out = np.full((*self.shape, *array.shape[2:]), outside, np.float32)
        out[st : st + sh, sl : sl + sw] = part
        return out

    def covered(self) -> np.ndarray:
        """(H, W) bool: the pixels the square shows (all of them for letterbox)."""
        mask = np.zeros(self.shape, bool)
        st, sl, sh, sw = self.source_box
        mask[st : st + sh, sl : sl + sw] = True
        return mask

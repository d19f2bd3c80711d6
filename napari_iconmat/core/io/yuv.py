"""RGBA -> Y'CbCr + alpha planes, exactly, in numpy (BT.709, limited range).

The alpha videos (``prores``, ``webm``) are encoded from frames already in the
codec's pixel format, made here, so no libswscale conversion runs on the way:
PyAV 18.1's ``VideoFrame.reformat(rgba64le -> yuva444p10le)`` converts in
slices and, on some calls, leaves the alpha at slice boundaries unwritten
(8-pixel runs at the start of rows 160 and 320 of 854x480 frames). Each output
sample here is a pure function of its input pixels, the same on every call and
with every library build:

- Y' = Kr R' + Kg G' + Kb B', Cb = (B' - Y') / (2 (1 - Kb)), Cr = (R' - Y') / (2 (1 - Kr)),
  with BT.709's Kr = 0.2126, Kb = 0.0722, on the (gamma-encoded) values in [0, 1];
- limited ("TV") range: Y' 16..235 and Cb, Cr 16..240 (x 4 at 10 bits), rounded;
- 4:2:0 chroma is the mean of each 2 x 2 block (edge pixels repeated on odd sizes);
- alpha is full range: round(A x (2^bits - 1) / 65535).
"""

from __future__ import annotations

import numpy as np

__all__ = ["PIXEL_FORMATS", "rgba_to_yuva", "yuva_frame"]

KR, KB = 0.2126, 0.0722  # BT.709
KG = 1.0 - KR - KB

#: pixel format -> (bits per sample, chroma subsampled 2 x 2)
PIXEL_FORMATS = {"yuva444p10le": (10, False), "yuva420p": (8, True)}


def rgba_to_yuva(rgba: np.ndarray, pix_fmt: str) -> list[np.ndarray]:
    """The Y, Cb, Cr and alpha planes of ``pix_fmt`` for one frame.

    Parameters
    ----------
    rgba : (H, W, 4) ndarray of uint16
        Colour and alpha scaled to 0..65535.
    pix_fmt : {'yuva444p10le', 'yuva420p'}

    Returns
    -------
    list of 4 ndarrays
        Y and alpha (H, W); Cb and Cr (H, W), or (ceil(H/2), ceil(W/2)) for 4:2:0;
        uint16 (10 bits) or uint8 (8 bits).

    >>> planes = rgba_to_yuva(np.full((2, 2, 4), 65535, np.uint16), "yuva444p10le")
    >>> [int(p[0, 0]) for p in planes]
    [940, 512, 512, 1023]
    """
    bits, subsampled = PIXEL_FORMATS[pix_fmt]
    rgba = np.asarray(rgba)
    if rgba.ndim != 3 or rgba.shape[2] != 4 or rgba.dtype != np.uint16:
        raise ValueError(f"expected (H, W, 4) uint16 RGBA, got {rgba.shape} {rgba.dtype}")
    r, g, b = (rgba[..., c].astype(np.float64) / 65535.0 for c in range(3))
    y = KR * r + KG * g + KB * b
    cb = (b - y) / (2.0 * (1.0 - KB))
    cr = (r - y) / (2.0 * (1.0 - KR))
    if subsampled:
        cb, cr = _mean_2x2(cb), _mean_2x2(cr)
    scale = float(1 << (bits - 8))
    dtype = np.uint16 if bits > 8 else np.uint8
    top = (1 << bits) - 1

    def quantise(values, offset, span):
        return np.clip(np.rint((offset + span * values) * scale), 0, top).astype(dtype)

    alpha = np.rint(rgba[..., 3].astype(np.float64) * (top / 65535.0)).astype(dtype)
    return [quantise(y, 16.0, 219.0), quantise(cb, 128.0, 224.0), quantise(cr, 128.0, 224.0), alpha]


def _mean_2x2(plane: np.ndarray) -> np.ndarray:
    height, width = plane.shape
    padded = np.pad(plane, ((0, height % 2), (0, width % 2)), mode="edge")
    return 0.25 * (padded[0::2, 0::2] + padded[1::2, 0::2] + padded[0::2, 1::2] + padded[1::2, 1::2])


def yuva_frame(rgba: np.ndarray, pix_fmt: str):
    """An ``av.VideoFrame`` in ``pix_fmt`` holding :func:`rgba_to_yuva` of ``rgba``, tagged BT.709 limited range."""
    import av

    planes = rgba_to_yuva(rgba, pix_fmt)
    height, width = rgba.shape[:2]
    frame = av.VideoFrame(width, height, pix_fmt)
    for plane, values in zip(frame.planes, planes):
        dtype = np.dtype("<u2") if values.dtype == np.uint16 else np.dtype(np.uint8)
        rows = np.frombuffer(plane, dtype).reshape(plane.height, plane.line_size // dtype.itemsize)
        if values.shape != (plane.height, plane.width):
            raise ValueError(f"plane of {pix_fmt} is {plane.height}x{plane.width}, computed {values.shape}")
        rows[:, : plane.width] = values
    for name, value in (("colorspace", 1), ("color_range", 1)):  # BT.709, limited ("MPEG") range
        try:
            setattr(frame, name, value)
        except (AttributeError, TypeError, ValueError):
            pass
    return frame

"""Frame pixels in one working form: RGB float32 in [0, 1].

Frames arrive as grayscale, RGB or RGBA, in uint8, uint16 or float. Engines
work on RGB float32 in [0, 1]. Integer and float images whose values do not use
their type's range (12-bit microscopy in uint16, floats in arbitrary units) are
rescaled with one fixed *intensity range* taken from the reference, so that all
frames of a run share the same scaling.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError

__all__ = ["intensity_range", "to_rgb_float", "check_frame"]


def check_frame(frame: np.ndarray, *, what: str = "frame") -> np.ndarray:
    """Validate a frame's shape and dtype; return it as an ndarray."""
    frame = np.asarray(frame)
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[..., 0]
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (3, 4)):
        raise InputError(f"{what} must be (H, W), (H, W, 3) or (H, W, 4), got shape {frame.shape}")
    if frame.shape[0] < 2 or frame.shape[1] < 2:
        raise InputError(f"{what} is too small to matte: {frame.shape[0]}x{frame.shape[1]} pixels")
    if not (np.issubdtype(frame.dtype, np.integer) or np.issubdtype(frame.dtype, np.floating) or frame.dtype == bool):
        raise InputError(f"{what} must be an integer or float image, got dtype {frame.dtype}")
    return frame


def intensity_range(frame: np.ndarray) -> tuple[float, float]:
    """The value range mapped to [0, 1] for frames like ``frame``.

    uint8 -> (0, 255). Other dtypes: (0, 1) for floats already in [0, 1], else
    the 0.1 and 99.9 percentiles of the finite values.
    """
    frame = np.asarray(frame)
    if frame.dtype == np.uint8 or frame.dtype == bool:
        return (0.0, 255.0) if frame.dtype == np.uint8 else (0.0, 1.0)
    values = frame[..., :3] if frame.ndim == 3 else frame
    values = values[np.isfinite(values)] if np.issubdtype(values.dtype, np.floating) else values.ravel()
    if values.size == 0:
        raise InputError("the reference image holds no finite value")
    if np.issubdtype(frame.dtype, np.floating) and values.min() >= 0 and values.max() <= 1:
        return (0.0, 1.0)
    lo, hi = np.percentile(values, [0.1, 99.9])
    if hi <= lo:
        hi = lo + 1.0
    return (float(lo), float(hi))


def to_rgb_float(frame: np.ndarray, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Convert a frame to (H, W, 3) float32 in [0, 1].

    Parameters
    ----------
    frame : (H, W), (H, W, 3) or (H, W, 4) ndarray
        RGBA drops its alpha; grayscale is repeated to three channels.
    value_range : (low, high), optional
        Mapped to (0, 1); default :func:`intensity_range` of ``frame``.
        NaN becomes 0, +-Inf is clipped.
    """
    frame = check_frame(frame)
    if frame.ndim == 3:
        frame = frame[..., :3]
    lo, hi = value_range if value_range is not None else intensity_range(frame)
    out = frame.astype(np.float32)
    if lo != 0.0 or hi != 1.0:
        out = (out - np.float32(lo)) * np.float32(1.0 / (hi - lo))
    out = np.nan_to_num(out, nan=0.0, posinf=1.0, neginf=0.0)
    np.clip(out, 0.0, 1.0, out=out)
    if out.ndim == 2:
        out = np.repeat(out[..., None], 3, axis=2)
    return np.ascontiguousarray(out)

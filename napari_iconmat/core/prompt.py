"""Reference prompts: a binary mask, a soft alpha or a scribble, in one canonical form.

A prompt says what the object is on the reference image. Three kinds are accepted:

* ``'mask'``: binary, 1 (or 255, or True) = object, 0 = background;
* ``'alpha'``: soft opacity in [0, 1] (uint8 / uint16 are scaled by their maximum);
* ``'scribble'``: labels, 1 = foreground, 2 = background, 0 = unknown.

All three become a :class:`Prompt`: an ``alpha`` map and a ``known`` map saying
where that alpha is given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError

__all__ = ["Prompt", "make_prompt", "PROMPT_KINDS"]

PROMPT_KINDS = ("auto", "mask", "alpha", "scribble")


@dataclass(frozen=True)
class Prompt:
    """Canonical reference prompt.

    Attributes
    ----------
    kind : {'mask', 'alpha', 'scribble'}
    alpha : (H, W) ndarray of float32 in [0, 1]
        Object opacity where ``known``; 0 elsewhere.
    known : (H, W) ndarray of bool
        Where ``alpha`` is given (everywhere for masks and alphas, the scribbled
        pixels for scribbles).
    """

    kind: str
    alpha: np.ndarray
    known: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.alpha.shape

    @property
    def foreground(self) -> np.ndarray:
        """(H, W) bool: pixels surely on the object (known and alpha > 0.5)."""
        return self.known & (self.alpha > 0.5)

    @property
    def background(self) -> np.ndarray:
        """(H, W) bool: pixels surely off the object (known and alpha <= 0.5)."""
        return self.known & (self.alpha <= 0.5)

    def to_bytes(self) -> bytes:
        """Stable byte form, used in reference signatures."""
        return (
            self.kind.encode()
            + np.ascontiguousarray(self.alpha, dtype=np.float32).tobytes()
            + np.packbits(self.known).tobytes()
        )


def _to_single_channel(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        return array
    if array.ndim == 3 and array.shape[2] in (1, 2, 3, 4):
        if array.shape[2] in (2, 4):
            alpha = array[..., -1]
            if alpha.min() != alpha.max():
                return alpha
        if array.shape[2] in (3, 4):
            rgb = array[..., :3]
            if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
                return rgb[..., 0]
            # a coloured mask image: anything not black is the object
            return rgb.max(axis=2)
        return array[..., 0]
    raise InputError(f"prompt must be a 2-D image (H, W) or (H, W, C), got an array of shape {array.shape}")


def _scale_to_unit(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.integer):
        top = float(array.max())
        if top <= 1:
            return array.astype(np.float32)
        if top <= 255 or array.dtype == np.uint8:
            return array.astype(np.float32) / 255.0
        return array.astype(np.float32) / 65535.0
    values = array.astype(np.float32)
    if not np.all(np.isfinite(values)):
        raise InputError("prompt contains NaN or infinite values")
    if values.min() < -1e-3 or values.max() > 1 + 1e-3:
        if values.min() >= 0 and values.max() <= 255:
            return values / 255.0
        raise InputError(
            f"a float prompt must lie in [0, 1], got values in [{values.min():.3g}, {values.max():.3g}]"
        )
    return np.clip(values, 0.0, 1.0)


def _guess_kind(array: np.ndarray) -> str:
    if np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_:
        values = np.unique(array)
        if values.size <= 3 and set(values.tolist()) <= {0, 1, 2} and 2 in values:
            return "scribble"
        if values.size <= 2:
            return "mask"
        return "alpha"
    values = np.unique(array)
    return "mask" if values.size <= 2 else "alpha"


def make_prompt(array, *, kind: str = "auto", shape: tuple[int, int] | None = None) -> Prompt:
    """Turn a user's mask, alpha or scribble image into a :class:`Prompt`.

    Parameters
    ----------
    array : (H, W) or (H, W, C) array-like
        bool, integer or float image. An RGBA image uses its alpha channel when
        that is not constant; a colour image counts any non-black pixel.
    kind : {'auto', 'mask', 'alpha', 'scribble'}, optional
        How to read ``array``. ``'auto'`` (default) reads an integer image with
        values in {0, 1, 2} that contains 2 as a scribble, a two-valued image as
        a mask and anything else as a soft alpha.
    shape : (H, W), optional
        The reference frame's shape; the prompt must match it.

    Returns
    -------
    Prompt

    Raises
    ------
    InputError
        Wrong shape or kind, values out of range, no foreground, or foreground
        everywhere.

    Examples
    --------
    >>> import numpy as np
    >>> m = np.zeros((4, 4), np.uint8); m[1:3, 1:3] = 255
    >>> p = make_prompt(m)
    >>> p.kind, float(p.alpha.sum()), bool(p.known.all())
    ('mask', 4.0, True)
    """
    if kind not in PROMPT_KINDS:
        raise InputError(f"prompt kind must be one of {PROMPT_KINDS}, got {kind!r}")
    array = np.asarray(array)
    if array.dtype == object or array.size == 0:
        raise InputError(f"prompt must be a non-empty numeric image, got dtype {array.dtype} and shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise InputError(f"prompt must be numeric, got dtype {array.dtype}")
    array = _to_single_channel(array)
    if shape is not None and tuple(array.shape) != tuple(shape[:2]):
        raise InputError(
            f"prompt must have the shape of the reference frame {tuple(shape[:2])}, got {tuple(array.shape)}"
        )
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        raise InputError("prompt contains NaN or infinite values")
    if kind == "auto":
        kind = _guess_kind(array)

    if kind == "scribble":
        labels = np.rint(array.astype(np.float64)).astype(np.int64)
        if labels.min() < 0 or labels.max() > 2:
            raise InputError(
                f"a scribble prompt holds 0 (unknown), 1 (foreground) and 2 (background), got values up to {labels.max()}"
            )
        alpha = (labels == 1).astype(np.float32)
        known = labels > 0
    else:
        alpha = _scale_to_unit(array)
        if kind == "mask":
            alpha = (alpha > 0.5).astype(np.float32)
        known = np.ones(alpha.shape, dtype=bool)

    prompt = Prompt(kind=kind, alpha=np.ascontiguousarray(alpha, np.float32), known=known)
    n_fg = int(prompt.foreground.sum())
    if n_fg == 0:
        raise InputError(f"the {kind} prompt marks no foreground (no pixel above 0.5): nothing to matte")
    if kind != "scribble" and int(prompt.background.sum()) == 0:
        raise InputError(
            f"the {kind} prompt covers the whole frame: mark the object only, so that some background is left"
        )
    return prompt

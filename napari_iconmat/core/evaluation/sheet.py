"""Contact sheets: frames, their alphas and the composites over a checkerboard, side by side.

Used by ``iconmat demo`` (:func:`napari_iconmat.core.pipeline.run.run_demo`) to show a
run at a glance.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError
from ..frames import to_rgb_float
from ..io.writers import alpha_to_uint8, atomic_write_png

__all__ = ["make_contact_sheet"]


def _checkerboard(height: int, width: int, cell: int = 8) -> np.ndarray:
    rows = (np.arange(height) // cell)[:, None]
    cols = (np.arange(width) // cell)[None, :]
    board = np.where((rows + cols) % 2 == 0, 0.8, 0.55).astype(np.float32)
    return np.repeat(board[..., None], 3, axis=2)


def make_contact_sheet(frames: Sequence[np.ndarray], alphas: Sequence[np.ndarray], path, *, height: int = 180) -> Path:
    """Draw one row per frame: the frame | its alpha | the composite over a checkerboard.

    Parameters
    ----------
    frames : sequence of (H, W[, C]) ndarray
        uint8, uint16 or float frames (converted with ``to_rgb_float``).
    alphas : sequence of (H, W) ndarray of float in [0, 1]
        One per frame, of the frame's size.
    path : str or path-like
        The PNG to write (atomically); its folder is created.
    height : int, default 180
        Height of each row in pixels; widths keep the aspect ratio.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    InputError
        No frames, a different number of frames and alphas, or an alpha whose
        size differs from its frame.
    """
    import cv2

    if len(frames) == 0 or len(frames) != len(alphas):
        raise InputError(f"a contact sheet needs as many alphas as frames (at least 1), got {len(frames)} and {len(alphas)}")
    rows = []
    width = None
    gap = 4
    for i, (frame, alpha) in enumerate(zip(frames, alphas)):
        rgb = to_rgb_float(frame)
        alpha = np.clip(np.asarray(alpha, np.float32), 0.0, 1.0)
        if alpha.shape != rgb.shape[:2]:
            raise InputError(f"alpha {i} of the contact sheet is {alpha.shape}, its frame {rgb.shape[:2]}")
        if width is None:
            width = max(1, round(rgb.shape[1] * height / rgb.shape[0]))
        rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
        alpha = cv2.resize(alpha, (width, height), interpolation=cv2.INTER_AREA)
        composite = alpha[..., None] * rgb + (1.0 - alpha[..., None]) * _checkerboard(height, width)
        spacer = np.ones((height, gap, 3), np.float32)
        rows.append(np.hstack([rgb, spacer, np.repeat(alpha[..., None], 3, axis=2), spacer, composite]))
    blank = np.ones((gap, rows[0].shape[1], 3), np.float32)
    sheet = np.vstack([part for row in rows for part in (row, blank)][:-1])
    path = Path(os.fspath(path)).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create folder {path.parent}: {exc.strerror or exc}") from None
    return atomic_write_png(path, alpha_to_uint8(sheet))

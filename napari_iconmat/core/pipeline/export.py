"""Save mattes that were made outside :func:`~napari_iconmat.core.pipeline.run.matte_sequence` (the napari widget).

:func:`export_mattes` writes alphas held in memory through the same
:class:`~napari_iconmat.core.io.OutputWriter` as ``iconmat matte``, so the
folder has the CLI's layout: ``OUT/alpha/NNNNN.png`` (NNNNN = frame index),
``OUT/rgba/NNNNN.png``, ``OUT/alpha.tif`` and ``OUT/iconmat-run.json``.
:func:`composite` draws a matte over a checkerboard or a colour for previews.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Generator, Sequence

import numpy as np

from ..errors import InputError
from ..frames import to_rgb_float
from ..io.writers import FORMATS, OutputWriter

__all__ = ["composite", "export_mattes", "iter_export"]


def composite(image: np.ndarray, alpha: np.ndarray, *, foreground: np.ndarray | None = None, background="checkerboard") -> np.ndarray:
    """The object over a new background: ``alpha * F + (1 - alpha) * B``.

    Parameters
    ----------
    image : (H, W[, C]) ndarray
        The frame (any dtype :func:`~napari_iconmat.core.frames.to_rgb_float` reads).
    alpha : (H, W) ndarray of float in [0, 1]
    foreground : (H, W, 3) ndarray of float in [0, 1], optional
        Estimated un-premultiplied foreground colours; default the frame's own
        colours (which keep a fringe of the old background on soft edges).
    background : 'checkerboard' or (r, g, b) floats in [0, 1], default 'checkerboard'

    Returns
    -------
    (H, W, 3) ndarray of uint8

    Examples
    --------
    >>> out = composite(np.full((2, 2, 3), 255, np.uint8), np.array([[1.0, 0.0], [0.5, 0.0]]), background=(0, 0, 0))
    >>> out[..., 0].tolist()
    [[255, 0], [128, 0]]
    """
    alpha = np.clip(np.asarray(alpha, np.float32), 0.0, 1.0)[..., None]
    colours = to_rgb_float(image) if foreground is None else np.asarray(foreground, np.float32)
    h, w = alpha.shape[:2]
    if isinstance(background, str):
        if background != "checkerboard":
            raise InputError(f"background must be 'checkerboard' or an (r, g, b) colour, got {background!r}")
        cell = max(4, min(h, w) // 16)
        board = ((np.arange(h)[:, None] // cell + np.arange(w)[None, :] // cell) % 2).astype(np.float32)
        back = np.repeat((0.55 + 0.25 * board)[..., None], 3, axis=2)
    else:
        rgb = np.asarray(background, np.float32).reshape(-1)
        if rgb.shape != (3,) or not np.all((rgb >= 0) & (rgb <= 1)):
            raise InputError(f"background colour must be three floats in [0, 1], got {background!r}")
        back = np.broadcast_to(rgb, (h, w, 3))
    out = alpha * colours + (1.0 - alpha) * back
    return np.rint(np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8)


def iter_export(
    alphas,
    out_dir,
    *,
    indices: Sequence[int] | None = None,
    formats: str | Sequence[str] = ("png",),
    frames=None,
    record: dict | None = None,
) -> Generator[int, None, dict[str, Path]]:
    """Write mattes one frame at a time; yield each frame index as it is written.

    Parameters
    ----------
    alphas : (T, H, W) array-like of float in [0, 1]
        The mattes (e.g. the widget's alpha layer data); ``alphas[i]`` is read
        for each index.
    out_dir : str or path-like
        Output folder (created); the CLI's layout, see the module docstring.
    indices : sequence of int, optional
        Frames to write; default all ``T``.
    formats : str or sequence of str, default ('png',)
        Any of {'png', 'png16', 'rgba', 'tiff'} (comma-separated in a string).
    frames : (T, H, W[, C]) array-like, optional
        The input frames; needed for 'rgba' (the foreground colours are
        estimated from each frame and its alpha).
    record : dict, optional
        Extra fields for ``iconmat-run.json`` (engine, keyframes, input ...).

    Yields
    ------
    index : int
        Each frame written.

    Returns
    -------
    outputs : dict of str to Path
        As :meth:`OutputWriter.close` (``'alpha'``, ``'rgba'``, ``'tiff'``);
        the generator's return value.

    Raises
    ------
    InputError
        Before anything is written: unknown format, 'rgba' without frames,
        indices out of range, alphas that are not (T, H, W) floats. Later: a
        file that cannot be written.
    """
    from .run import RUN_RECORD, write_json

    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]
    formats = tuple(dict.fromkeys(str(f).lower() for f in formats)) or ("png",)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise InputError(f"unknown output format {unknown[0]!r}: choose from {', '.join(FORMATS)}")
    shape = tuple(getattr(alphas, "shape", np.shape(alphas)))
    if len(shape) != 3:
        raise InputError(f"alphas must be a (T, H, W) stack, got shape {shape}")
    dtype = np.dtype(getattr(alphas, "dtype", np.float32))
    if not np.issubdtype(dtype, np.floating):
        raise InputError(f"alphas must be float in [0, 1], got dtype {dtype}")
    n = shape[0]
    indices = list(range(n)) if indices is None else sorted({int(i) for i in indices})
    if not indices:
        raise InputError("nothing to export: no frame has a matte yet")
    bad = [i for i in indices if not 0 <= i < n]
    if bad:
        raise InputError(f"frame {bad[0]} is out of range for {n} mattes (0..{n - 1})")
    if "rgba" in formats:
        if frames is None:
            raise InputError("format 'rgba' needs the input frames (for the foreground colours)")
        if len(frames) != n:
            raise InputError(f"format 'rgba' needs one frame per matte: {len(frames)} frames for {n} mattes")
    out_dir = Path(os.fspath(out_dir)).expanduser()
    writer = OutputWriter(out_dir, formats)
    try:
        for i in indices:
            alpha = np.asarray(alphas[i], np.float32)
            foreground = None
            if writer.needs_foreground:
                from ..matting.closed_form import estimate_foreground

                foreground = estimate_foreground(to_rgb_float(np.asarray(frames[i])), alpha)
            writer.write(i, alpha, foreground=foreground)
            yield i
    except BaseException:  # includes a cancel (GeneratorExit): no alpha.tif that looks complete
        writer.discard()
        raise
    outputs = writer.close()
    info: dict[str, Any] = {
        "format": "napari-iconmat-run/1",
        "complete": True,
        "source": "napari-iconmat export",
        "formats": list(formats),
        "frames_written": len(indices),
        "frame_indices": indices,
        "outputs": {key: str(value) for key, value in outputs.items()},
    }
    info.update(record or {})
    write_json(out_dir / RUN_RECORD, info)
    return outputs


def export_mattes(alphas, out_dir, **options) -> dict[str, Path]:
    """Write mattes in the CLI's layout; :func:`iter_export` without the per-frame yields.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     outputs = export_mattes(np.zeros((2, 4, 4), np.float32), tmp, formats="png,tiff")
    ...     sorted(p.name for p in Path(tmp).iterdir())
    ['alpha', 'alpha.tif', 'iconmat-run.json']
    """
    steps = iter_export(alphas, out_dir, **options)
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value

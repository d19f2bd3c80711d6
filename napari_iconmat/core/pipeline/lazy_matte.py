"""Lazy mattes: a dask array of frames in, a lazy dask array of alphas out.

For scientific pipelines and napari, which compute only what they look at:

- an unordered **collection** becomes one task per image, each needing only the
  reference query, so ``alphas[i].compute()`` mattes image ``i`` alone;
- an ordered **sequence** becomes a chain of tasks from the reference frame
  outwards (each frame needs the track state of its temporal neighbour), so
  ``alphas[t].compute()`` mattes the frames between the reference and ``t``
  once, and nothing beyond.

dask is imported only when :func:`matte_lazy` is called.
"""

from __future__ import annotations

import numpy as np

from ..engine import Engine
from ..errors import InputError
from ..reference import ReferenceQuery
from .propagate import plan_runs

__all__ = ["matte_lazy"]


def matte_lazy(
    frames,
    query: ReferenceQuery,
    engine: Engine,
    *,
    ordered: bool = True,
    reference_index: int | None = None,
    direction: str = "both",
):
    """Build a lazy dask array of the alpha of every frame.

    Parameters
    ----------
    frames : (T, H, W) or (T, H, W, C) dask array or ndarray
        uint8, uint16 or float frames; C in {1, 3, 4}.
    query : ReferenceQuery
        From ``engine.encode_reference``.
    engine : Engine
        The engine that encoded ``query``.
    ordered : bool, default True
        True: a temporal sequence matted outwards from the reference frame;
        False: an unordered collection, every image on its own.
    reference_index : int, optional
        Index of the reference frame in ``frames`` (sequences); None when the
        reference image is not one of the frames (the sequence is then matted
        from its first frame onwards).
    direction : {'both', 'forward', 'backward'}
        From the reference frame (sequences only). Frames not reached are NaN.

    Returns
    -------
    alphas : (T, H, W) dask array of float32 in [0, 1]
        One chunk per frame.

    Examples
    --------
    >>> import dask.array as da
    >>> from napari_iconmat.core import make_engine, make_prompt
    >>> stack = np.zeros((4, 32, 32), np.uint8); stack[:, 8:24, 8:24] = 200
    >>> engine = make_engine("classical")
    >>> query = engine.encode_reference(stack[0], make_prompt(stack[0] > 100))
    >>> alphas = matte_lazy(da.from_array(stack, chunks=(1, 32, 32)), query, engine, reference_index=0)
    >>> alphas.shape, alphas.dtype, float(alphas[2].compute()[16, 16])
    ((4, 32, 32), dtype('float32'), 1.0)
    """
    import dask
    import dask.array as da

    if not isinstance(frames, da.Array):
        frames = da.from_array(np.asarray(frames), chunks=(1, *np.shape(frames)[1:]))
    if frames.ndim not in (3, 4) or (frames.ndim == 4 and frames.shape[-1] not in (1, 3, 4)):
        raise InputError(f"frames must have shape (T, H, W) or (T, H, W, C) with C in 1, 3, 4; got {frames.shape}")
    length, height, width = frames.shape[:3]
    if length == 0:
        raise InputError("frames holds no frame")
    if any(np.isnan(s) for s in frames.shape):
        raise InputError("frames must have a known shape (compute its chunk sizes first)")
    if reference_index is not None and not 0 <= reference_index < length:
        raise InputError(f"reference frame {reference_index} is out of range: {length} frames (0..{length - 1})")
    frames = frames.rechunk((1, *frames.shape[1:]))
    shape = (height, width)

    if not ordered:
        def matte_block(block):
            matte, _ = engine.matte_frame(block[0], query, state=None)
            return matte.alpha[None].astype(np.float32)

        return frames.map_blocks(
            matte_block,
            chunks=((1,) * length, (height,), (width,)),
            drop_axis=[3] if frames.ndim == 4 else [],
            dtype=np.float32,
            meta=np.empty((0, 0, 0), np.float32),
        )

    alphas: list = [None] * length
    step = dask.delayed(_step, nout=2)
    start = dask.delayed(_reference, nout=2)
    runs = plan_runs(length, reference_index=reference_index, ordered=True, direction=direction)
    for run in runs:
        state = None
        if run.start == "reference":
            alpha, state = start(engine, query)
            if not run.indices:
                alphas[reference_index] = alpha
        for index in run.indices:
            alpha, state = step(engine, query, frames[index], state)
            alphas[index] = alpha
    missing = dask.delayed(np.full)(shape, np.nan, np.float32)
    columns = [da.from_delayed(a if a is not None else missing, shape, dtype=np.float32) for a in alphas]
    return da.stack(columns)


def _reference(engine: Engine, query: ReferenceQuery):
    matte, state = engine.reference_matte(query)
    return matte.alpha.astype(np.float32), state


def _step(engine: Engine, query: ReferenceQuery, frame, state):
    matte, state = engine.matte_frame(np.asarray(frame), query, state=state)
    return matte.alpha.astype(np.float32), state

"""Stream frames through an engine: one frame in, one matte out.

For an ordered sequence (video, stack) the matte travels from the reference
frame forward to the end and backward to the start, each frame handing its
track state to the next. For an unordered collection every image is matted on
its own against the reference query. Only the current frame and a small track
state are held, so memory does not grow with the number of frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..engine import Engine, FrameMatte, with_upcoming
from ..errors import InputError
from ..frames import to_rgb_float
from ..matting.closed_form import estimate_foreground
from ..reference import ReferenceQuery

__all__ = ["DIRECTIONS", "Run", "plan_runs", "propagate", "parse_range"]

DIRECTIONS = ("both", "forward", "backward")


@dataclass(frozen=True)
class Run:
    """A chain of frames matted in order, each passing its state to the next.

    ``start`` is ``'reference'`` (the chain starts from the reference frame's
    state) or ``'fresh'`` (the first frame is matted without a temporal neighbour).
    ``indices`` are matted in order; only those in ``emit`` are yielded.
    """

    start: str
    indices: tuple[int, ...]
    emit: frozenset


def parse_range(text: str | None, length: int) -> tuple[int, int]:
    """Parse ``'A:B'`` (Python slice bounds, either may be empty) into ``(start, stop)`` within ``length``."""
    if text is None or text == "":
        return 0, length
    parts = text.split(":")
    if len(parts) != 2:
        raise InputError(f"--range must look like A:B (e.g. 10:50 or :20), got {text!r}")
    try:
        start = int(parts[0]) if parts[0].strip() else 0
        stop = int(parts[1]) if parts[1].strip() else length
    except ValueError:
        raise InputError(f"--range must hold integers, got {text!r}") from None
    start, stop, _ = slice(start, stop).indices(length)
    if start >= stop:
        raise InputError(f"--range {text!r} selects no frame of the {length} in the input")
    return start, stop


def plan_runs(
    length: int,
    *,
    reference_index: int | None,
    ordered: bool,
    direction: str = "both",
    frame_range: tuple[int, int] | None = None,
) -> list[Run]:
    """Decide which frames are matted in which order.

    Parameters
    ----------
    length : int
        Number of frames in the input.
    reference_index : int or None
        Index of the reference frame in the input, or None for an external reference image.
    ordered : bool
        True for a temporal sequence, False for an unordered collection.
    direction : {'both', 'forward', 'backward'}
        From the reference frame (sequences only).
    frame_range : (start, stop), optional
        Frames to output; default all. Frames between the reference and the
        range are still matted (not output) to carry the state.
    """
    if direction not in DIRECTIONS:
        raise InputError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    start, stop = frame_range if frame_range is not None else (0, length)
    wanted = set(range(start, stop))
    if not ordered:
        return [Run("fresh", (i,), frozenset({i})) for i in range(start, stop)]
    if reference_index is None:
        return [Run("fresh", tuple(range(start, stop)), frozenset(wanted))]
    ref = reference_index
    runs = []
    if ref in wanted:
        runs.append(Run("reference", (), frozenset({ref})))
    if direction in ("both", "forward") and stop - 1 > ref:
        chain = tuple(range(ref + 1, stop))
        runs.append(Run("reference", chain, frozenset(wanted & set(chain))))
    if direction in ("both", "backward") and start < ref:
        chain = tuple(range(ref - 1, start - 1, -1))
        runs.append(Run("reference", chain, frozenset(wanted & set(chain))))
    return runs


def count_outputs(runs: list[Run]) -> int:
    return sum(len(run.emit) for run in runs)


def _frames(source, indices):
    if hasattr(source, "iter_frames"):
        yield from source.iter_frames(list(indices))
    else:
        for i in indices:
            yield i, np.asarray(source[i])


def propagate(
    source,
    query: ReferenceQuery,
    engine: Engine,
    *,
    reference_index: int | None = None,
    ordered: bool = True,
    direction: str = "both",
    frame_range: tuple[int, int] | None = None,
    with_foreground: bool = False,
) -> Iterator[tuple[int, FrameMatte]]:
    """Matte the frames of ``source`` with ``query``, yielding ``(index, FrameMatte)`` as each is done.

    Parameters
    ----------
    source : FrameSource or sequence of (H, W[, C]) arrays
        Anything with ``len()`` and integer indexing; a FrameSource streams.
    query : ReferenceQuery
        From ``engine.encode_reference``.
    engine : Engine
    reference_index : int, optional
        Where the reference frame sits in ``source`` (its matte is the
        reference's own); None when the reference image is not one of the frames.
    ordered, direction, frame_range
        See :func:`plan_runs`.
    with_foreground : bool
        Also estimate un-premultiplied foreground colours.

    Yields
    ------
    index : int
    matte : FrameMatte
        ``alpha`` is (H, W) float32 in [0, 1].

    Examples
    --------
    >>> from napari_iconmat.core import make_engine, make_prompt
    >>> frames = np.zeros((3, 32, 32), np.uint8); frames[:, 8:24, 8:24] = 200
    >>> engine = make_engine("classical")
    >>> query = engine.encode_reference(frames[0], make_prompt(frames[0] > 100))
    >>> [(i, m.alpha.shape) for i, m in propagate(frames, query, engine, reference_index=0)]
    [(0, (32, 32)), (1, (32, 32)), (2, (32, 32))]
    """
    length = len(source)
    if reference_index is not None and not 0 <= reference_index < length:
        raise InputError(f"reference frame {reference_index} is out of range: the input has {length} frames (0..{length - 1})")
    runs = plan_runs(length, reference_index=reference_index, ordered=ordered, direction=direction, frame_range=frame_range)
    for run in runs:
        state = None
        if run.start == "reference":
            matte, state = engine.reference_matte(query)
            if not run.indices and reference_index in run.emit:
                if with_foreground and matte.foreground is None:
                    rgb = to_rgb_float(query.arrays["image"]) if "image" in query.arrays else None
                    if rgb is not None:
                        matte.foreground = estimate_foreground(rgb, matte.alpha)
                yield reference_index, matte
                continue
        for index, frame, options in with_upcoming(engine, _frames(source, run.indices)):
            try:
                matte, state = engine.matte_frame(frame, query, state=state, with_foreground=with_foreground and index in run.emit, **options)
            except InputError as exc:  # name the frame the problem is in
                raise InputError(f"frame {index}: {exc}") from None
            if index in run.emit:
                yield index, matte

"""A (T, H, W[, C]) array view of a frame source that decodes frames only when they are looked at.

:class:`LazyFrames` lets a viewer (napari) show a long video at once: it has
``shape``, ``dtype``, ``ndim`` and numpy-style indexing, reads a frame on first
access and keeps the last few decoded frames, so memory holds a handful of
frames whatever the length of the video.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from ..errors import InputError
from .readers import FrameSource, open_frames

__all__ = ["LazyFrames", "open_lazy"]


class LazyFrames:
    """Frames of a :class:`FrameSource` as a read-only, lazily decoded array.

    Parameters
    ----------
    source : FrameSource
        An ordered source (all frames of one size), e.g. from
        :func:`~napari_iconmat.core.io.open_frames`. It is owned by this
        object: :meth:`close` closes it.
    cache_frames : int, default 16
        Decoded frames kept in memory (least recently used are dropped).

    Attributes
    ----------
    shape : tuple of int
        ``(T, H, W)`` or ``(T, H, W, C)``, from the first frame.
    dtype : numpy.dtype
    path : Path or None
        The file or folder the frames come from.

    Raises
    ------
    InputError
        If the frames differ in size (an unordered collection).

    Notes
    -----
    Indexing is thread-safe (one lock around the decoder), so a viewer may
    slice from one thread while another reads; a worker that reads many frames
    should rather call :meth:`open_source` and decode with its own source.

    Examples
    --------
    >>> frames = LazyFrames(open_frames(np.arange(24, dtype=np.uint8).reshape(4, 2, 3)))
    >>> frames.shape, frames[2, 1].tolist(), frames[1:3, 0, 0].tolist()
    ((4, 2, 3), [15, 16, 17], [6, 12])
    """

    def __init__(self, source: FrameSource, *, cache_frames: int = 16) -> None:
        if not source.ordered:
            raise InputError(
                f"the frames of {source.path or 'the input'} differ in size: they can be opened as a "
                "collection, not as one (T, H, W) stack"
            )
        self._source = source
        self._lock = threading.Lock()
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self.cache_frames = max(1, int(cache_frames))
        self.reads = 0  # frames decoded so far (cache misses)
        first = self._frame(0)
        self.shape = (len(source), *first.shape)
        self.dtype = first.dtype
        self.path = source.path
        self.fps = source.fps

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    @property
    def kind(self) -> str:
        """What the frames come from (``'video'``, ``'folder'``, ...)."""
        return self._source.kind

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"<LazyFrames {self._source.kind} shape={self.shape} dtype={self.dtype}>"

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        if any(k is Ellipsis for k in key):
            at = next(i for i, k in enumerate(key) if k is Ellipsis)
            fill = (slice(None),) * (self.ndim - len(key) + 1)
            key = key[:at] + fill + key[at + 1 :]
        first, rest = (key[0], key[1:]) if key else (slice(None), ())
        if isinstance(first, (int, np.integer)) and not isinstance(first, bool):
            return self._frame(int(first))[rest]
        indices = np.arange(self.shape[0])[first]
        frames = [self._frame(int(i))[rest] for i in np.atleast_1d(indices)]
        if not frames:
            empty = np.empty(self.shape[1:], self.dtype)[rest]
            return np.empty((0, *empty.shape), self.dtype)
        return np.stack(frames)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        # Materialises every frame: only for small inputs (a viewer never needs it).
        out = np.stack([self._frame(i) for i in range(self.shape[0])])
        return out if dtype is None else out.astype(dtype)

    def _frame(self, index: int) -> np.ndarray:
        with self._lock:
            n = len(self._source)
            if not -n <= index < n:
                raise IndexError(f"frame index {index} is out of range for {n} frames")
            index %= n
            frame = self._cache.get(index)
            if frame is not None:
                self._cache.move_to_end(index)
                return frame
            frame = np.asarray(self._source[index])
            if hasattr(self, "shape") and frame.shape != self.shape[1:]:
                raise InputError(f"frame {index} has shape {frame.shape}, the others {self.shape[1:]}")
            frame.flags.writeable = False
            self.reads += 1
            self._cache[index] = frame
            while len(self._cache) > self.cache_frames:
                self._cache.popitem(last=False)
            return frame

    def open_source(self) -> FrameSource:
        """A new, independent source of the same frames (its own decoder), for another thread."""
        if self.path is not None:
            return open_frames(self.path)
        return self._source  # arrays and lists have no decoder state

    def close(self) -> None:
        """Close the underlying source and drop the cache."""
        with self._lock:
            self._cache.clear()
            self._source.close()


def open_lazy(path, *, cache_frames: int = 16) -> LazyFrames:
    """Open a video, image folder or TIFF stack as a :class:`LazyFrames` array.

    Raises
    ------
    InputError
        Unreadable input, or a folder of images of different sizes.
    """
    source = open_frames(path)
    try:
        return LazyFrames(source, cache_frames=cache_frames)
    except BaseException:
        source.close()
        raise

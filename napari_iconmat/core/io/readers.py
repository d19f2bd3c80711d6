"""Read frames from videos, image folders, TIFF stacks, single images and arrays.

:func:`open_frames` turns whatever the user points at into a :class:`FrameSource`:
a sequence of frames that are read (decoded) one at a time, so a long video or a
large stack never has to fit in memory. Frames keep their native dtype (uint8,
uint16, float32, ...) and come in RGB(A) channel order; converting them to the
engines' working form is :mod:`napari_iconmat.core.frames`' job.

========  ======================================================  ==========
kind      source                                                  ``ordered``
========  ======================================================  ==========
video     .mp4 .mov .avi .mkv .webm .m4v, decoded with PyAV        True
folder    a folder of .png .jpg .jpeg .tif .tiff .bmp .webp        same sizes
tiff      a (multi-page) .tif/.tiff file, read with tifffile       True
image     one .png .jpg .jpeg .bmp .webp file                      True
array     (T, H, W[, C]) ndarray or dask array, list of frames     True
========  ======================================================  ==========
"""

from __future__ import annotations

import contextlib
import logging
import operator
import os
import re
import threading
import warnings
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import cv2
import numpy as np

from ..errors import InputError

__all__ = [
    "FrameSource",
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "natural_key",
    "open_frames",
    "read_image",
]

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
_TIFF_SUFFIXES = (".tif", ".tiff")



class _FrameIndexError(InputError, IndexError):
    """A frame index out of range (an IndexError too, so sequence idioms keep working)."""


def natural_key(name: str | os.PathLike) -> tuple:
    """Sort key that orders the numbers inside names by value.

    Parameters
    ----------
    name : str or path-like
        A file name or path.

    Returns
    -------
    key : tuple
        Compare keys of two names to sort them: digit runs compare as integers
        (``frame_2 < frame_10``), other text case-insensitively.

    Examples
    --------
    >>> sorted(["f10.png", "f2.png", "F1.png"], key=natural_key)
    ['F1.png', 'f2.png', 'f10.png']
    """
    text = os.fspath(name)
    parts = re.split(r"([0-9]+)", text)
    # (0, number) for digit runs and (1, text) for the rest keep every pair of
    # keys comparable; the raw name breaks ties ("2" vs "002", "a" vs "A").
    key = tuple((0, int(p), "") if i % 2 else (1, 0, p.casefold()) for i, p in enumerate(parts) if p)
    return key + ((2, 0, text),)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read one image file (a reference image, a mask, a frame of a folder).

    Parameters
    ----------
    path : str or path-like
        A .png (8- or 16-bit), .jpg/.jpeg, .tif/.tiff (one image, read with
        tifffile), .bmp or .webp file.

    Returns
    -------
    image : (H, W) or (H, W, 3) or (H, W, 4) ndarray
        Native dtype (uint8, uint16, float32, ...); channels in RGB(A) order;
        grayscale images stay 2-D.

    Raises
    ------
    InputError
        If the file is missing, is a folder, has an unsupported extension, is a
        multi-frame TIFF, or cannot be decoded.
    """
    path = _existing_path(path)
    if path.is_dir():
        raise InputError(f"expected an image file, got a folder: {path}")
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise InputError(f"unsupported image file {path}: expected one of {', '.join(IMAGE_SUFFIXES)}")
    if suffix in _TIFF_SUFFIXES:
        with _TiffSource(path) as stack:
            if len(stack) != 1:
                raise InputError(f"{path} holds {len(stack)} frames; expected a single image")
            return stack[0]
    return _read_with_cv2(path)


def open_frames(source: Any) -> FrameSource:
    """Open a video, image folder, TIFF stack, image or array as a sequence of frames.

    Parameters
    ----------
    source : str, path-like, ndarray, dask array, list of ndarray or FrameSource
        - a video file (``.mp4 .mov .avi .mkv .webm .m4v``), streamed with PyAV;
        - a folder of images (``.png .jpg .jpeg .tif .tiff .bmp .webp``), one
          frame per file in natural order (``2 < 10``); hidden files and other
          extensions are ignored;
        - a ``.tif``/``.tiff`` file: the frames of its first series (one 2-D page
          or one ``(H, W, 3)`` page is a single frame);
        - a single image file: one frame;
        - an ndarray or dask array of shape ``(T, H, W)`` or ``(T, H, W, C)``
          with C in {1, 3, 4}; a single frame must be wrapped in a list;
        - a list or tuple of ``(H, W)`` / ``(H, W, C)`` arrays (sizes may differ);
        - a :class:`FrameSource`, returned as is.

    Returns
    -------
    frames : FrameSource
        Read frames with ``frames[i]`` or ``frames.iter_frames(indices)``;
        close it (or use it as a context manager) when done.

    Raises
    ------
    InputError
        If the path does not exist, has an unsupported extension, is an empty
        folder or an unreadable file, or if an array has an unusable shape.

    Examples
    --------
    >>> frames = open_frames(np.zeros((3, 4, 5), np.uint8))
    >>> len(frames), frames[-1].shape, frames.kind
    (3, (4, 5), 'array')
    """
    if isinstance(source, FrameSource):
        return source
    if isinstance(source, (str, os.PathLike)):
        path = _existing_path(source)
        if path.is_dir():
            return _FolderSource(path)
        suffix = path.suffix.lower()
        if suffix in VIDEO_SUFFIXES:
            from .video import VideoSource  # PyAV is imported only for videos

            return VideoSource(path)
        if suffix in _TIFF_SUFFIXES:
            return _TiffSource(path)
        if suffix in IMAGE_SUFFIXES:
            return _ImageSource(path)
        raise InputError(
            f"unsupported input {path}: expected a folder, a video ({' '.join(VIDEO_SUFFIXES)}) "
            f"or an image ({' '.join(IMAGE_SUFFIXES)})"
        )
    if isinstance(source, (list, tuple)):
        return _ListSource(source)
    if _is_dask(source) or isinstance(source, np.ndarray):
        return _ArraySource(source)
    raise InputError(
        f"cannot read frames from a {type(source).__name__}: expected a path, an ndarray, "
        "a dask array or a list of arrays"
    )


class FrameSource:
    """A sequence of frames read on demand.

    Attributes
    ----------
    kind : {'video', 'folder', 'tiff', 'image', 'array'}
        What the frames come from.
    path : Path or None
        The file or folder read, None for arrays.
    fps : float or None
        Frames per second when the source records it (videos, ImageJ TIFFs).
    frame_names : list of str or None
        File stems of a folder's images, in frame order; None otherwise.
    ordered : bool
        True when the frames form a sequence of equal-sized frames (video, TIFF,
        array); for a folder, True when all images have the same size.

    Notes
    -----
    ``frames[i]`` returns frame ``i`` (negative ``i`` counts from the end) as an
    ``(H, W)`` or ``(H, W, C)`` ndarray with C in {3, 4} (RGB or RGBA order) in its
    native dtype. A source is not thread-safe: read it from one thread.
    """

    kind: str = ""
    ordered: bool = True

    def __init__(
        self,
        *,
        path: Path | None = None,
        fps: float | None = None,
        frame_names: list[str] | None = None,
    ) -> None:
        self.path = path
        self.fps = fps
        self.frame_names = frame_names
        self._length = 0

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> np.ndarray:
        return self._read(self._normalize(index))

    def __iter__(self) -> Iterator[np.ndarray]:
        for _, frame in self.iter_frames(range(len(self))):
            yield frame

    def iter_frames(self, indices: Iterable[int]) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(index, frame)`` for each index, in the order given.

        Parameters
        ----------
        indices : iterable of int
            Frame indices; negative ones count from the end. All are checked
            before the first frame is read. Videos decode an ascending run
            (``i, i+1, ...``) sequentially and a descending run in blocks of at
            most 32 frames decoded forward from a keyframe.

        Yields
        ------
        index : int
            The frame index, made non-negative.
        frame : (H, W) or (H, W, C) ndarray
            As returned by ``frames[index]``.

        Raises
        ------
        InputError
            If an index is out of range (before anything is yielded), or a frame
            cannot be read.
        """
        for i in [self._normalize(i) for i in indices]:
            yield i, self._read(i)

    def close(self) -> None:
        """Release the open file (videos, TIFF files); do not read frames afterwards."""

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = f" {str(self.path)!r}" if self.path is not None else ""
        return f"<{type(self).__name__} kind={self.kind!r}{where} frames={len(self)}>"

    def _read(self, index: int) -> np.ndarray:
        raise NotImplementedError

    def _normalize(self, index: Any) -> int:
        try:
            if isinstance(index, bool):
                raise TypeError
            i = operator.index(index)
        except TypeError:
            raise InputError(f"frame index must be an integer, got {index!r}") from None
        n = len(self)
        if not -n <= i < n:
            where = f" of {self.path}" if self.path is not None else ""
            raise _FrameIndexError(f"frame index {i} is out of range for the {n} frames{where}")
        return i % n


class _ArraySource(FrameSource):
    """Frames along the first axis of an ndarray or a dask array."""

    kind = "array"

    def __init__(self, data: Any) -> None:
        super().__init__()
        shape = tuple(int(s) for s in data.shape)
        if len(shape) not in (3, 4):
            hint = "; wrap a single frame in a list: [frame]" if len(shape) == 2 else ""
            raise InputError(f"frame array must be (T, H, W) or (T, H, W, C), got shape {shape}{hint}")
        if len(shape) == 4 and shape[-1] not in (1, 3, 4):
            raise InputError(f"frame array (T, H, W, C) must have C in 1, 3, 4, got shape {shape}")
        if shape[0] == 0:
            raise InputError(f"frame array holds no frames: shape {shape}")
        _check_dtype(np.dtype(data.dtype), "frame array")
        self._data = data
        self._dask = _is_dask(data)
        self._length = shape[0]

    def _read(self, index: int) -> np.ndarray:
        frame = self._data[index]
        frame = np.asarray(frame.compute() if self._dask else frame)
        return frame[..., 0] if frame.ndim == 3 and frame.shape[2] == 1 else frame


class _ListSource(FrameSource):
    """Frames given one by one in a list or tuple (their sizes may differ)."""

    kind = "array"

    def __init__(self, frames: Sequence[Any]) -> None:
        super().__init__()
        if len(frames) == 0:
            raise InputError("the list of frames is empty")
        items = []
        for i, item in enumerate(frames):
            if not (_is_dask(item) or isinstance(item, np.ndarray)):
                item = np.asarray(item)
            shape = tuple(int(s) for s in item.shape)
            if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] not in (1, 3, 4)):
                raise InputError(
                    f"frame {i} of the list must be (H, W) or (H, W, C) with C in 1, 3, 4, got shape {shape}"
                )
            _check_dtype(np.dtype(item.dtype), f"frame {i} of the list")
            items.append(item)
        self._items = items
        self._length = len(items)
        self.ordered = len({tuple(item.shape[:2]) for item in items}) == 1

    def _read(self, index: int) -> np.ndarray:
        item = self._items[index]
        frame = np.asarray(item.compute()) if _is_dask(item) else item
        return frame[..., 0] if frame.ndim == 3 and frame.shape[2] == 1 else frame


class _ImageSource(FrameSource):
    """A single image file as a one-frame source."""

    kind = "image"

    def __init__(self, path: Path) -> None:
        super().__init__(path=path)
        self._image = _read_with_cv2(path)
        self._length = 1

    def _read(self, index: int) -> np.ndarray:
        return self._image.copy()


class _FolderSource(FrameSource):
    """One frame per image file of a folder, in natural order of the names.

    ``files`` lists the image paths in frame order.
    """

    kind = "folder"

    def __init__(self, path: Path) -> None:
        files = [p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")]
        files = sorted((p for p in files if p.is_file()), key=lambda p: natural_key(p.name))
        if not files:
            raise InputError(f"no images in folder {path}: expected files ending in {' '.join(IMAGE_SUFFIXES)}")
        super().__init__(path=path, frame_names=[p.stem for p in files])
        self.files = files
        self._length = len(files)

    @cached_property
    def ordered(self) -> bool:  # type: ignore[override]
        # Read sizes from the file headers only; decode only what PIL cannot open.
        sizes = {_image_size(p) for p in self.files}
        return len(sizes) == 1

    def _read(self, index: int) -> np.ndarray:
        try:
            return read_image(self.files[index])
        except InputError as exc:
            # A damaged frame file fails again on every run: say which, and what to do (no resume hint).
            raise InputError(f"{exc}; fix or remove that file from {self.path}") from None


class _TiffSource(FrameSource):
    """The frames of a TIFF file's first series, one page (or plane) at a time."""

    kind = "tiff"

    def __init__(self, path: Path) -> None:
        import tifffile

        super().__init__(path=path)
        if path.stat().st_size == 0:
            raise InputError(f"TIFF file is empty (0 bytes): {path}")
        try:
            with _quiet_tifffile():  # its warnings about damaged files would be a second, unasked-for line
                self._tif = tifffile.TiffFile(path)
                self._frames = self._locate_frames()
        except InputError:
            self.close()
            raise
        except _tiff_damage() as exc:
            self.close()
            raise InputError(f"cannot read TIFF file {path}: {_reason(exc) or type(exc).__name__}") from exc
        except BaseException:
            self.close()
            raise
        self._length = len(self._frames)
        if self._length == 0:
            self.close()
            raise InputError(f"TIFF file holds no images: {path}")
        meta = self._tif.imagej_metadata or {}
        finterval = meta.get("finterval")
        if isinstance(finterval, (int, float)) and finterval > 0:
            self.fps = 1.0 / finterval

    def _locate_frames(self) -> list[tuple[Any, Any, bool]]:
        """One ``(reader, key, channels_first)`` per frame: ``reader(key)`` returns it."""
        tif = self._tif
        if not tif.series:
            return []
        # Files written page by page with tifffile (as OutputWriter does for
        # frames of different sizes) hold one series per frame.
        one_page_each = all(len(s.pages) == 1 and s.ndim == s.keyframe.ndim for s in tif.series)
        if len(tif.series) > 1 and tif.is_shaped and one_page_each:
            self.ordered = len({s.shape for s in tif.series}) == 1
            return [(s.asarray, None, self._check_page_axes(s.keyframe)) for s in tif.series]
        series = tif.series[0]
        page = series.keyframe
        channels_first = self._check_page_axes(page)
        lead = series.axes[: len(series.axes) - len(page.axes)]
        if "C" in lead and series.shape[lead.index("C")] > 1:
            warnings.warn(
                f"{self.path} has a channel axis ({series.axes}); each channel is read as a separate frame",
                stacklevel=4,
            )
        per_frame = int(np.prod(page.shape))
        count = int(np.prod(series.shape)) // per_frame if per_frame else 0
        if count == len(series.pages):
            return [(self._read_page, (series, k), channels_first) for k in range(count)]
        # Some ImageJ stacks store every frame after one IFD: map the data instead.
        import tifffile

        data = tifffile.memmap(self.path, series=0, mode="r") if series.dataoffset else series.asarray()
        data = data.reshape((count, *page.shape))
        return [(data.__getitem__, k, channels_first) for k in range(count)]

    def _check_page_axes(self, page: Any) -> bool:
        axes, shape = page.axes, page.shape
        if axes not in ("YX", "YXS", "SYX"):
            raise InputError(f"unsupported TIFF image layout {axes} {shape} in {self.path}: expected YX or YXS pages")
        samples = shape[axes.index("S")] if "S" in axes else 1
        if samples not in (1, 3, 4):
            raise InputError(f"TIFF file {self.path} has {samples} samples per pixel; supported: 1, 3, 4")
        return axes == "SYX"

    @staticmethod
    def _read_page(key: tuple[Any, int]) -> np.ndarray:
        series, k = key
        return series.pages[k].asarray()

    def _read(self, index: int) -> np.ndarray:
        reader, key, channels_first = self._frames[index]
        try:
            with _quiet_tifffile():
                frame = np.asarray(reader(key) if key is not None else reader())
        except _tiff_damage() as exc:
            raise InputError(f"cannot read frame {index} of TIFF file {self.path}: {_reason(exc) or type(exc).__name__}") from exc
        if channels_first:
            frame = np.moveaxis(frame, 0, -1)
        if frame.ndim == 3 and frame.shape[2] == 1:
            frame = frame[..., 0]
        return np.ascontiguousarray(frame)

    def close(self) -> None:
        tif = getattr(self, "_tif", None)
        if tif is not None:
            tif.close()


def _tiff_damage() -> tuple[type[BaseException], ...]:
    """What tifffile raises on a damaged file.

    Besides its own TiffFileError, a corrupted tag can surface from deep in its
    parser as a TypeError, an AssertionError or a division by zero (found by
    fuzzing): all mean "this file is damaged", never a bug of ours.
    """
    import struct
    import zlib

    import tifffile

    return (
        tifffile.TiffFileError, ValueError, OSError, KeyError, IndexError, TypeError, AssertionError,
        ArithmeticError, RuntimeError, struct.error, zlib.error, MemoryError,
    )  # fmt: skip


@contextlib.contextmanager
def _quiet_tifffile():
    log = logging.getLogger("tifffile")
    level = log.level
    log.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        log.setLevel(level)


@contextlib.contextmanager
def _quiet_native_stderr():
    """Mute what C decoders (libpng, libjpeg, OpenCV's log) print to file descriptor 2.

    On a damaged image they print their own lines before we raise our
    one-line error. Only done on the main thread (the command line): readers
    on worker threads (the napari widget) leave the process's stderr alone.
    """
    saved = -1
    if threading.current_thread() is threading.main_thread():
        try:
            saved = os.dup(2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, 2)
            finally:
                os.close(devnull)
        except OSError:
            if saved >= 0:
                os.close(saved)
            saved = -1
    try:
        yield
    finally:
        if saved >= 0:
            os.dup2(saved, 2)
            os.close(saved)


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(text).split())


def _existing_path(path: str | os.PathLike) -> Path:
    path = Path(os.fspath(path)).expanduser()
    if not path.exists():
        raise InputError(f"input not found: {path}")
    return path


def _is_dask(obj: Any) -> bool:
    return hasattr(obj, "compute") and hasattr(obj, "chunks") and hasattr(obj, "shape")


def _check_dtype(dtype: np.dtype, what: str) -> None:
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating) or dtype == np.bool_):
        raise InputError(f"{what} must hold integers or floats, got dtype {dtype}")


def _read_with_cv2(path: Path) -> np.ndarray:
    """Decode a non-TIFF image file to RGB(A) order, keeping bit depth and gray."""
    if path.stat().st_size == 0:
        raise InputError(f"image file is empty (0 bytes): {path}")
    # np.fromfile + imdecode instead of imread: imread fails on non-ASCII paths on Windows.
    data = np.fromfile(path, dtype=np.uint8)
    with _quiet_native_stderr():
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        image = _read_with_pil(path)
    elif image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    return apply_orientation(image, exif_orientation(path))


def exif_orientation(path) -> int:
    """The EXIF orientation tag of an image file (1-8), 1 when it has none.

    Cameras and phones store pictures sensor-side up and record how to turn
    them; every photo viewer (and OpenCV's ``imread``) shows them turned.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return _orientation(im)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return 1


def _orientation(im) -> int:
    """The EXIF orientation of an opened PIL image, read from its header only."""
    if im.format == "PNG" and "exif" not in im.info:
        # only an eXIf chunk ahead of the pixels counts: Pillow would decode the whole image to look further
        return 1
    value = im.getexif().get(0x0112, 1)
    return int(value) if isinstance(value, int) and 1 <= value <= 8 else 1


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Turn and/or mirror ``(H, W[, C])`` pixels as EXIF ``orientation`` says (as ``PIL.ImageOps.exif_transpose``)."""
    if orientation in (5, 6, 7, 8):
        swap = (1, 0, *range(2, image.ndim))
        turned = {5: lambda a: a.transpose(swap), 6: lambda a: np.rot90(a, -1), 7: lambda a: np.rot90(a, 2).transpose(swap), 8: lambda a: np.rot90(a, 1)}
        return np.ascontiguousarray(turned[orientation](image))
    if orientation == 2:
        return np.ascontiguousarray(image[:, ::-1])
    if orientation == 3:
        return np.ascontiguousarray(image[::-1, ::-1])
    if orientation == 4:
        return np.ascontiguousarray(image[::-1])
    return image


def _read_with_pil(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode in ("P", "PA", "LA", "CMYK", "YCbCr"):
                im = im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB")
            return np.asarray(im)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputError(f"cannot read image {path}: {_reason(exc)}") from exc


def _image_size(path: Path) -> tuple[int, int]:
    """(H, W) of an image, from its header when PIL can parse it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            width, height = im.size
            turned = _orientation(im) in (5, 6, 7, 8)
            return (width, height) if turned else (height, width)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return tuple(read_image(path).shape[:2])

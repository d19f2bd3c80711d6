"""Video and zarr containers assembled from per-frame results.

A video file cannot be appended to safely (a killed encoder leaves a file
without its index), so :class:`~napari_iconmat.core.io.writers.OutputWriter`
keeps per-frame results on disk and calls the functions here once, at the end
of a run. Each writes under a hidden temporary name in the destination folder
and renames it into place, so a file under its final name is always complete.

=========  ==========================  =====================================================
format     file                        codec / layout
=========  ==========================  =====================================================
prores     ``matte.mov``               ProRes 4444 (``prores_ks`` profile 4), yuva444p10le,
                                       BT.709; colour = foreground, alpha = matte (planes
                                       computed exactly in numpy, :mod:`.yuv`)
webm       ``matte.webm``              VP9 (``libvpx-vp9``) yuva420p, CRF 15; colour +
                                       alpha (read it back with libvpx-vp9, see
                                       :mod:`.video`)
matte      ``alpha.mov``               PNG codec in QuickTime, gray (8-bit) or gray16be
                                       (with png16): lossless, the alpha PNGs' values
zarr       ``alpha.zarr``              zarr group; array ``alpha`` (T, H, W) float32,
                                       one chunk per frame (frames of different sizes:
                                       one array per frame under ``frames/``)
=========  ==========================  =====================================================

Timestamps: frames keep the presentation times of the input when it is a video
(its time base and pts), else frame ``i`` is shown at ``i / fps``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..errors import InputError
from .yuv import yuva_frame

__all__ = ["DEFAULT_FPS", "FrameTiming", "VIDEO_FORMATS", "check_encoders", "write_video", "write_zarr"]

#: frame rate of videos made from inputs that record none (image folders, arrays)
DEFAULT_FPS = Fraction(25)

#: format -> (file name, codec, pixel format, options)
VIDEO_FORMATS = {
    "prores": ("matte.mov", "prores_ks", "yuva444p10le", {"profile": "4", "vendor": "apl0"}),
    "webm": (
        "matte.webm",
        "libvpx-vp9",
        "yuva420p",
        {"crf": "15", "b": "0", "deadline": "good", "cpu-used": "4", "row-mt": "1"},
    ),
    "matte": ("alpha.mov", "png", "gray", {}),
}


@dataclass(frozen=True)
class FrameTiming:
    """When each frame of an input is shown.

    Attributes
    ----------
    rate : Fraction
        Nominal frames per second.
    time_base : Fraction
        Seconds per timestamp unit.
    pts : tuple of int, optional
        Presentation timestamp of frame ``i`` of the input, in ``time_base``
        units; None: frame ``i`` is at ``i / rate`` (``time_base = 1 / rate``).
    """

    rate: Fraction
    time_base: Fraction
    pts: tuple[int, ...] | None = None

    @classmethod
    def from_fps(cls, fps: float | Fraction | None) -> FrameTiming:
        """Constant-rate timing at ``fps`` (None or not positive: :data:`DEFAULT_FPS`)."""
        try:
            rate = Fraction(fps).limit_denominator(1001) if fps else DEFAULT_FPS
        except (TypeError, ValueError, OverflowError):
            rate = DEFAULT_FPS
        if rate <= 0:
            rate = DEFAULT_FPS
        return cls(rate=rate, time_base=1 / rate)

    def pts_of(self, index: int) -> int:
        """Timestamp of frame ``index`` of the input, in ``time_base`` units."""
        if self.pts is not None and 0 <= index < len(self.pts):
            return int(self.pts[index])
        return int(index)

    def to_json(self) -> dict:
        return {"rate": str(self.rate), "time_base": str(self.time_base), "source_pts": self.pts is not None}


def check_encoders(formats) -> None:
    """Raise InputError, before any work, when this PyAV lacks the encoder of a video format."""
    import av

    for fmt in formats:
        codec = VIDEO_FORMATS[fmt][1]
        try:
            av.codec.Codec(codec, "w")
        except (av.FFmpegError, ValueError):
            raise InputError(f"format {fmt!r} needs the {codec} encoder, which this PyAV (FFmpeg) build lacks") from None


def temp_name(path: Path) -> Path:
    """A hidden temporary name next to ``path``, distinct per write: ``.NAME.<12 hex>.tmp``.

    A crash leaves only dot-files nobody reads as output;
    :func:`remove_temporaries` deletes them.
    """
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")


_TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp$")


def remove_temporaries(directory: Path) -> None:
    """Delete, under ``directory``, the :func:`temp_name` files that killed writes left.

    Call it only while holding the folder's lock: a live writer's temporary
    would go too.
    """
    for path in Path(directory).rglob(".*.tmp"):
        if _TEMPORARY.match(path.name) and path.is_file():
            path.unlink(missing_ok=True)


@contextlib.contextmanager
def removed_on_failure(tmp: Path, target: Path) -> Iterator[None]:
    """Around the block that writes ``tmp`` and renames it to ``target``: on any failure ``tmp`` is removed.

    An OSError (a full disk, a missing permission) becomes an InputError naming ``target``.
    """
    try:
        yield
    except OSError as exc:
        _remove(tmp)
        raise InputError(f"cannot write {target}: {_why(exc)}") from exc
    except BaseException:
        _remove(tmp)
        raise


def write_video(
    target: Path,
    fmt: str,
    frames: Iterable[tuple[int, np.ndarray]],
    *,
    timing: FrameTiming,
    deep: bool = False,
    metadata: dict | None = None,
) -> Path:
    """Encode frames into a video file atomically.

    Parameters
    ----------
    target : Path
        Destination file; replaced when it exists.
    fmt : {'prores', 'webm', 'matte'}
        See the module docstring.
    frames : iterable of (index, ndarray)
        In increasing index order. For 'prores' and 'webm' each array is
        (H, W, 4) uint16 RGBA (colour and alpha scaled to 0..65535); for
        'matte' (H, W) uint8, or uint16 when ``deep``. All of one size.
    timing : FrameTiming
        Timestamps of the input's frames (``index`` picks the frame's).
    deep : bool, default False
        'matte' only: 16-bit gray instead of 8-bit.
    metadata : dict of str, optional
        Container tags (e.g. ``comment``).

    Returns
    -------
    target : Path

    Raises
    ------
    InputError
        If the encoder refuses the frames or the file cannot be written; no
        temporary file is left.
    """
    import av

    name, codec, pix_fmt, options = VIDEO_FORMATS[fmt]
    if fmt == "matte" and deep:
        pix_fmt = "gray16be"
    tmp = temp_name(target)
    count = 0
    try:
        is_mov = target.suffix == ".mov"
        muxer_options = {}
        if is_mov and timing.time_base.numerator == 1 and timing.time_base.denominator <= 2**31 - 1:
            # The edit list that shifts a late first frame is in the movie's timescale
            # (1/1000 by default): make it the stream's, or the start time is rounded.
            muxer_options["movie_timescale"] = str(timing.time_base.denominator)
        container = av.open(str(tmp), "w", format="mov" if is_mov else "webm", options=muxer_options)
        try:
            for key, value in (metadata or {}).items():
                container.metadata[key] = str(value)
            stream = None
            for index, array in frames:
                if stream is None:
                    stream = _open_stream(container, codec, pix_fmt, options, array.shape, timing)
                frame = _to_frame(array, fmt, pix_fmt)
                frame.pts = timing.pts_of(index)
                frame.time_base = timing.time_base
                for packet in stream.encode(frame):
                    container.mux(packet)
                count += 1
            if stream is not None:
                for packet in stream.encode():
                    container.mux(packet)
        finally:
            container.close()
        if count == 0:
            raise InputError(f"no frames to write into {target}")
        os.replace(tmp, target)
    except OSError as exc:  # av.error.OSError too: a full disk while muxing
        _remove(tmp)
        raise InputError(f"cannot write {target}: {_why(exc)}") from exc
    except (av.FFmpegError, ValueError) as exc:
        _remove(tmp)
        raise InputError(f"cannot encode {target} ({codec}): {' '.join(str(exc).split())}") from exc
    except BaseException:
        _remove(tmp)
        raise
    return target


def _open_stream(container, codec: str, pix_fmt: str, options: dict, shape: tuple, timing: FrameTiming):
    stream = container.add_stream(codec, rate=timing.rate, options=dict(options))
    stream.height, stream.width = int(shape[0]), int(shape[1])
    stream.pix_fmt = pix_fmt
    # The codec's time base defaults to 1/rate, which would round the source's timestamps.
    stream.codec_context.time_base = timing.time_base
    stream.time_base = timing.time_base
    if pix_fmt.startswith("yuv"):
        context = stream.codec_context
        context.colorspace = context.color_primaries = context.color_trc = 1  # BT.709
        context.color_range = 1  # limited ("TV") range, what editors expect of ProRes and VP9
    return stream


def _to_frame(array: np.ndarray, fmt: str, pix_fmt: str):
    import av

    array = np.ascontiguousarray(array)
    if fmt == "matte":
        return av.VideoFrame.from_ndarray(array, format="gray16le" if array.dtype == np.uint16 else "gray")
    # The planes are computed here, in numpy (BT.709, as the stream is tagged), and handed to the
    # encoder in its own pixel format: no libswscale conversion, whose sliced runs left alpha
    # unwritten at slice boundaries on some calls (PyAV 18.1), runs on the way.
    return yuva_frame(array, pix_fmt)


def write_zarr(
    target: Path,
    pages: Iterator[tuple[int, np.ndarray]],
    shapes: dict[int, tuple[int, int]],
    *,
    attributes: dict | None = None,
) -> Path:
    """Write float32 alphas into a zarr group atomically (a temporary folder, then a rename).

    Parameters
    ----------
    target : Path
        Destination folder (``alpha.zarr``); replaced when it exists.
    pages : iterator of (index, (H, W) ndarray of float32)
        In increasing index order.
    shapes : dict of int to (H, W)
        The shape of every frame that ``pages`` yields.
    attributes : dict, optional
        Stored as the group's attributes, with ``frame_indices``.

    Returns
    -------
    target : Path

    Raises
    ------
    InputError
        If zarr is not installed or the folder cannot be written.
    """
    try:
        import zarr
    except ImportError:
        raise InputError("format 'zarr' needs the zarr package: pip install 'napari-iconmat[zarr]'") from None

    indices = sorted(shapes)
    tmp = temp_name(target)
    with removed_on_failure(tmp, target):
        group = zarr.open_group(store=str(tmp), mode="w")
        group.attrs.update(dict(attributes or {}, frame_indices=indices))
        if len(set(shapes.values())) == 1:
            (h, w), = set(shapes.values())
            array = group.create_array("alpha", shape=(len(indices), h, w), chunks=(1, h, w), dtype="float32")
            for position, (_, page) in enumerate(pages):
                array[position] = page
        else:
            frames = group.create_group("frames")
            for index, page in pages:
                h, w = page.shape
                frames.create_array(f"{index:05d}", shape=(h, w), chunks=(h, w), dtype="float32")[...] = page
        if target.exists():
            # A directory cannot be replaced in one rename: move the old one aside first.
            old = temp_name(target)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    return target


def _why(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return f"{exc.strerror} (the disk is full)"
    return str(exc.strerror or exc)


def _remove(path: Path) -> None:
    # Cleanup on an error path that is already reporting the real failure.
    try:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass

"""Write alpha mattes: one PNG per frame, RGBA cut-outs, TIFF and zarr stacks, videos with alpha.

Every file is written under a temporary name in its final folder and renamed
into place, so a killed run never leaves a half-written file under a final
name. Layout of an output folder ``DIR``::

    DIR/alpha/00000.png ...   always; 8-bit, or 16-bit with "png16"
    DIR/rgba/00000.png ...    with "rgba": foreground colours + alpha, 8-bit RGBA
    DIR/alpha.tif             with "tiff" (float32) or "tiff16" (uint16): one page per frame
    DIR/alpha.zarr            with "zarr": float32 (T, H, W), one chunk per frame
    DIR/matte.mov             with "prores": ProRes 4444, colour = foreground, alpha = matte
    DIR/matte.webm            with "webm": VP9 with alpha
    DIR/alpha.mov             with "matte": the alpha alone, lossless gray video (track matte)
    DIR/.iconmat/             per-frame parts of the stacks and videos until they are assembled

File numbers are the frames' indices in the input, zero-padded to 5 digits.
Colour (RGBA PNGs and videos) is straight (un-premultiplied) by default, or
premultiplied by the alpha with ``colour='premultiplied'``; the video files say
which in their ``comment`` tag, the zarr group in its attributes.
"""

from __future__ import annotations

import importlib.util
import io
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator

import cv2
import numpy as np

from ..errors import InputError
from .containers import VIDEO_FORMATS, FrameTiming, _remove, _why, check_encoders, remove_temporaries, removed_on_failure, temp_name, write_video, write_zarr
from .lock import FolderLock
from .readers import read_image

__all__ = [
    "atomic_write_bytes",
    "COLOURS",
    "FORMATS",
    "FORMAT_HELP",
    "OutputWriter",
    "alpha_to_uint16",
    "alpha_to_uint8",
    "atomic_write_png",
]

FORMATS = ("png", "png16", "rgba", "tiff", "tiff16", "zarr", "prores", "webm", "matte")
FORMAT_HELP = {
    "png": "alpha/NNNNN.png: 8-bit grayscale alpha, one file per frame (always written)",
    "png16": "alpha/NNNNN.png written as 16-bit grayscale instead of 8-bit",
    "rgba": "rgba/NNNNN.png: estimated foreground colours with the alpha as an 8-bit RGBA cut-out",
    "tiff": "alpha.tif: float32 alphas in [0, 1], one page per frame in frame order",
    "tiff16": "alpha.tif as uint16 (0..65535) instead of float32",
    "zarr": "alpha.zarr: float32 (T, H, W) zarr array, one chunk per frame (for dask)",
    "prores": "matte.mov: ProRes 4444 with alpha (colour = estimated foreground), source timestamps",
    "webm": "matte.webm: VP9 with alpha (colour = estimated foreground), source timestamps",
    "matte": "alpha.mov: the alpha alone as a lossless gray video (PNG codec), a track matte for editors",
}
#: how colour is stored next to the alpha: straight (un-premultiplied) or multiplied by it
COLOURS = ("straight", "premultiplied")

# formats assembled from the float alphas kept in DIR/.iconmat/parts/alpha
_STACK_FORMATS = ("tiff", "tiff16", "zarr")
# formats that carry colour and need the foreground of every frame
_COLOUR_FORMATS = ("rgba", "prores", "webm")
_PARTS = Path(".iconmat") / "parts"

# 4 GiB less headroom for tags: past this a classic TIFF's offsets overflow.
_BIGTIFF_BYTES = 2**32 - 2**25


def alpha_to_uint8(alpha: np.ndarray) -> np.ndarray:
    """Quantise an alpha matte to 8 bits.

    Parameters
    ----------
    alpha : (H, W) ndarray of float
        Finite values; clipped to [0, 1].

    Returns
    -------
    alpha8 : (H, W) ndarray of uint8
        ``round(255 * clip(alpha, 0, 1))``.

    Examples
    --------
    >>> alpha_to_uint8(np.array([[-0.5, 0.5, 1.0]]))
    array([[  0, 128, 255]], dtype=uint8)
    """
    return np.rint(np.clip(alpha, 0.0, 1.0) * 255.0).astype(np.uint8)


def alpha_to_uint16(alpha: np.ndarray) -> np.ndarray:
    """Quantise an alpha matte to 16 bits.

    Parameters
    ----------
    alpha : (H, W) ndarray of float
        Finite values; clipped to [0, 1].

    Returns
    -------
    alpha16 : (H, W) ndarray of uint16
        ``round(65535 * clip(alpha, 0, 1))``.

    Examples
    --------
    >>> alpha_to_uint16(np.array([[0.0, 0.5, 2.0]]))
    array([[    0, 32768, 65535]], dtype=uint16)
    """
    return np.rint(np.clip(alpha, 0.0, 1.0) * 65535.0).astype(np.uint16)


def atomic_write_png(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write a PNG so that ``path`` only ever names a complete file.

    Parameters
    ----------
    path : str or path-like
        Destination; its folder must exist. An existing file is replaced.
    array : (H, W), (H, W, 3) or (H, W, 4) ndarray of uint8 or uint16
        Grayscale, RGB or RGBA (in that channel order).

    Returns
    -------
    path : Path
        The file written.

    Raises
    ------
    InputError
        If ``array`` has another shape or dtype, or the file cannot be written
        (missing folder, no permission, disk full); no temporary file is left.
    """
    path = Path(path)
    array = np.asarray(array)
    if array.dtype not in (np.uint8, np.uint16):
        raise InputError(f"PNG {path} must be written from uint8 or uint16 data, got dtype {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    elif array.ndim == 3 and array.shape[2] == 4:
        array = cv2.cvtColor(array, cv2.COLOR_RGBA2BGRA)
    elif array.ndim != 2:
        raise InputError(f"PNG {path} must be written from an (H, W), (H, W, 3) or (H, W, 4) array, got {array.shape}")
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(array))
    if not ok:
        raise InputError(f"cannot encode PNG {path} from an array of shape {array.shape}")
    atomic_write_bytes(path, encoded.tobytes())
    return path


class OutputWriter:
    """Write the alpha mattes of a run into one output folder.

    Parameters
    ----------
    out_dir : str or path-like
        Output folder; created (with parents) at the first write.
    formats : str or sequence of str, default ("png",)
        Any of {'png', 'png16', 'rgba', 'tiff', 'tiff16', 'zarr', 'prores',
        'webm', 'matte'} (see ``FORMAT_HELP``); 'tiff' and 'tiff16' exclude
        each other. ``alpha/NNNNN.png`` is always written: 8-bit, 16-bit with 'png16'.
    overwrite : bool, default True
        If False, writing over an existing output file raises InputError.
    colour : {'straight', 'premultiplied'}, default 'straight'
        How 'rgba', 'prores' and 'webm' store colour: the estimated foreground
        as is, or multiplied by the alpha.
    timing : FrameTiming, optional
        Timestamps of the input's frames, for the videos ('prores', 'webm',
        'matte'); None: frame ``i`` at ``i / 25`` s.
    lock : bool, default True
        Hold ``out_dir/.iconmat/lock`` from the first write (or :meth:`lock`)
        until :meth:`close` or :meth:`discard`, so that a second writer into the
        same folder is refused; a lock left by a dead process is taken over.

    Attributes
    ----------
    out_dir : Path
        The output folder.
    formats : tuple of str
        The formats requested, without duplicates.
    colour : str

    Raises
    ------
    InputError
        If a format or colour is unknown or ``out_dir`` is an existing file.

    Notes
    -----
    Frames may be written in any order (propagation runs forward, then
    backward). Stacks and videos cannot be appended to safely, so each frame
    leaves parts in ``out_dir/.iconmat/parts`` (the float alpha as ``.npy`` for
    'tiff', 'tiff16' and 'zarr'; the foreground as a 16-bit PNG for 'prores'
    and 'webm') and :meth:`close` assembles the files in index order, one frame
    in memory at a time, then deletes the parts. A later writer can adopt the
    frames of an interrupted one with :meth:`resume`. Frames of equal size form
    one (T, H, W) series; frames of different sizes are stored as one series
    per frame (TIFF, zarr) and are refused by the video formats.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     with OutputWriter(tmp, formats=("png", "tiff")) as writer:
    ...         _ = writer.write(1, np.full((4, 5), 0.5))
    ...         _ = writer.write(0, np.zeros((4, 5)))
    ...     sorted(p.name for p in Path(tmp).iterdir())
    ['alpha', 'alpha.tif']
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        formats: str | Iterable[str] = ("png",),
        *,
        overwrite: bool = True,
        colour: str = "straight",
        timing: FrameTiming | None = None,
        lock: bool = True,
    ) -> None:
        if isinstance(formats, str):
            formats = (formats,)
        formats = tuple(dict.fromkeys(str(f).lower() for f in formats))
        unknown = [f for f in formats if f not in FORMATS]
        if unknown:
            raise InputError(f"unknown output format {unknown[0]!r}: choose from {', '.join(FORMATS)}")
        if "tiff" in formats and "tiff16" in formats:
            raise InputError("formats 'tiff' and 'tiff16' both write alpha.tif: choose one")
        if "zarr" in formats and importlib.util.find_spec("zarr") is None:
            raise InputError("format 'zarr' needs the zarr package: pip install 'napari-iconmat[zarr]'")
        videos = [f for f in VIDEO_FORMATS if f in formats]
        if videos:
            check_encoders(videos)
        if colour not in COLOURS:
            raise InputError(f"colour must be one of {', '.join(COLOURS)}, got {colour!r}")
        if timing is not None and not isinstance(timing, FrameTiming):
            raise InputError(f"timing must be a FrameTiming, got {type(timing).__name__}")
        self.out_dir = Path(os.fspath(out_dir)).expanduser()
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise InputError(f"output folder is a file: {self.out_dir}")
        self.formats = formats or ("png",)
        self.overwrite = overwrite
        self.colour = colour
        self.timing = timing or FrameTiming.from_fps(None)
        self._lock = FolderLock(self.out_dir) if lock else None
        self._written: set[int] = set()
        self._video_shape: tuple[int, tuple[int, int]] | None = None  # (first index, its shape)
        self._parts_ready = False
        self._closed = False

    @property
    def needs_foreground(self) -> bool:
        """True when 'rgba', 'prores' or 'webm' is requested: :meth:`write` then needs ``foreground``."""
        return any(f in self.formats for f in _COLOUR_FORMATS)

    @property
    def written(self) -> list[int]:
        """Indices of the frames written (or adopted with :meth:`resume`) so far, ascending."""
        return sorted(self._written)

    def lock(self) -> None:
        """Take the output folder's lock now (it is taken at the first write otherwise).

        Raises
        ------
        InputError
            If another live process (or writer) holds the folder.
        """
        if self._lock is not None and not self._lock.held:
            self._lock.acquire()

    def resume(self, indices: Iterable[int]) -> list[int]:
        """Adopt the frames that an interrupted writer of this folder finished.

        A frame is adopted when all its per-frame files and parts are present
        (each was written atomically, so present means complete); parts of
        other frames, and the temporaries of writes that were killed, are deleted.

        Parameters
        ----------
        indices : iterable of int
            Frames the earlier run recorded as done.

        Returns
        -------
        missing : list of int
            Those of ``indices`` whose files are incomplete: write them again.
        """
        self.lock()
        remove_temporaries(self.out_dir)
        missing = []
        for index in sorted({_check_index(i) for i in indices}):
            if all(path.is_file() for path in self._files_of(index)):
                self._written.add(index)
            else:
                missing.append(index)
        self._prune_parts(keep=self._written)
        if self._video_formats() and self._written:
            first = min(self._written)
            self._video_shape = (first, tuple(read_image(self.out_dir / "alpha" / f"{first:05d}.png").shape[:2]))
        return missing

    def write(self, index: int, alpha: np.ndarray, *, foreground: np.ndarray | None = None) -> list[Path]:
        """Write the outputs of one frame.

        Parameters
        ----------
        index : int
            The frame's index in the input (>= 0); names the files.
        alpha : (H, W) ndarray of float
            The alpha matte; finite, clipped to [0, 1] when quantised.
        foreground : (H, W, 3) ndarray of float in [0, 1], optional
            Estimated foreground colours (RGB, un-premultiplied); required when
            'rgba', 'prores' or 'webm' is requested, ignored otherwise.

        Returns
        -------
        paths : list of Path
            The per-frame files written (the alpha PNG, then the RGBA PNG).

        Raises
        ------
        InputError
            If the index, alpha or foreground is invalid, a video format gets a
            frame of another size than the first, a file exists and
            ``overwrite`` is False, the folder is locked by another run, or a
            file cannot be written.
        """
        if self._closed:
            raise InputError(f"the writer for {self.out_dir} is closed; cannot write frame {index}")
        index = _check_index(index)
        alpha = _check_alpha(alpha, index)
        if self.needs_foreground:
            foreground = _check_foreground(foreground, alpha.shape, index)
        videos = self._video_formats()
        if videos:
            if self._video_shape is None or self._video_shape[0] == index:
                self._video_shape = (index, alpha.shape)
            elif self._video_shape[1] != alpha.shape:
                first, shape = self._video_shape
                raise InputError(
                    f"format {videos[0]!r} needs frames of one size: frame {index} is {alpha.shape}, "
                    f"frame {first} was {shape}; use png, tiff or zarr for inputs whose frames change size"
                )
        self.lock()
        name = f"{index:05d}"
        paths = []

        alpha_png = self._target("alpha", f"{name}.png")
        alpha_q = alpha_to_uint16(alpha) if "png16" in self.formats else alpha_to_uint8(alpha)
        paths.append(atomic_write_png(alpha_png, alpha_q))

        if "rgba" in self.formats:
            colour = foreground * np.clip(alpha, 0.0, 1.0)[..., None] if self.colour == "premultiplied" else foreground
            rgba = np.dstack([alpha_to_uint8(colour), alpha_to_uint8(alpha)])
            paths.append(atomic_write_png(self._target("rgba", f"{name}.png"), rgba))

        if any(f in self.formats for f in _STACK_FORMATS):
            _atomic_write_npy(self._part("alpha", f"{name}.npy"), alpha.astype(np.float32))
        if "prores" in self.formats or "webm" in self.formats:
            # Straight colour at 16 bits; premultiplied (if asked) when the videos are assembled.
            atomic_write_png(self._part("fg", f"{name}.png"), alpha_to_uint16(foreground))

        self._written.add(index)
        return paths

    def close(self, *, release: bool = True) -> dict[str, Path]:
        """Finish the outputs: assemble stacks and videos, delete the parts, release the lock.

        Parameters
        ----------
        release : bool, default True
            Release the folder's lock; False keeps it until :meth:`unlock`.

        Returns
        -------
        outputs : dict of str to Path
            What was written: ``'alpha'`` (folder of PNGs), ``'rgba'`` (folder),
            ``'tiff'`` (file, also for 'tiff16'), ``'zarr'`` (folder),
            ``'prores'``, ``'webm'``, ``'matte'`` (files) for the formats
            requested; empty when no frame was written.

        Raises
        ------
        InputError
            If a stack or video cannot be written (no temporary file is left;
            the parts are kept, so closing again, or resuming, can retry).
        """
        outputs: dict[str, Path] = {}
        if self._written:
            outputs["alpha"] = self.out_dir / "alpha"
            if "rgba" in self.formats:
                outputs["rgba"] = self.out_dir / "rgba"
            if "tiff" in self.formats or "tiff16" in self.formats:
                outputs["tiff"] = self.out_dir / "alpha.tif"
            if "zarr" in self.formats:
                outputs["zarr"] = self.out_dir / "alpha.zarr"
            for fmt in self._video_formats():
                outputs[fmt] = self.out_dir / VIDEO_FORMATS[fmt][0]
        if not self._closed and self._written:
            try:
                if "tiff" in outputs:
                    self._assemble_tiff(np.uint16 if "tiff16" in self.formats else np.float32)
                if "zarr" in outputs:
                    self._assemble_zarr()
                for fmt in self._video_formats():
                    self._assemble_video(fmt)
            except BaseException:
                if release:  # the parts stay: closing again (or resuming) can retry
                    self._release()
                raise
        self._remove_parts()
        if release:
            self._release()
        self._closed = True
        return outputs

    def unlock(self) -> None:
        """Release the folder's lock (after ``close(release=False)``)."""
        self._release()

    def discard(self, *, keep_parts: bool = False) -> None:
        """Stop without assembling stacks or videos (after a failed run); keep finished PNGs.

        Parameters
        ----------
        keep_parts : bool, default False
            Keep the per-frame parts, so that a later writer can :meth:`resume`.
        """
        if not keep_parts:
            self._remove_parts()
        self._release()
        self._closed = True

    def __enter__(self) -> OutputWriter:
        return self

    def __exit__(self, exc_type: Any, *exc_info: object) -> None:
        # A run that failed must not leave an alpha.tif that looks complete.
        if exc_type is None:
            self.close()
        else:
            self.discard()

    def __repr__(self) -> str:
        return f"OutputWriter({str(self.out_dir)!r}, formats={self.formats!r}, written={len(self._written)})"

    # ---------------------------------------------------------------- pieces

    def _video_formats(self) -> list[str]:
        return [f for f in VIDEO_FORMATS if f in self.formats]

    def _files_of(self, index: int) -> list[Path]:
        name = f"{index:05d}"
        files = [self.out_dir / "alpha" / f"{name}.png"]
        if "rgba" in self.formats:
            files.append(self.out_dir / "rgba" / f"{name}.png")
        if any(f in self.formats for f in _STACK_FORMATS):
            files.append(self.out_dir / _PARTS / "alpha" / f"{name}.npy")
        if "prores" in self.formats or "webm" in self.formats:
            files.append(self.out_dir / _PARTS / "fg" / f"{name}.png")
        return files

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()

    def _target(self, folder: str, name: str) -> Path:
        directory = self.out_dir / folder
        _make_dir(directory)
        path = directory / name
        if not self.overwrite and path.exists():
            raise InputError(f"output file exists: {path} (pass overwrite=True to replace it)")
        return path

    def _part(self, kind: str, name: str) -> Path:
        parts = self.out_dir / _PARTS
        if not self._parts_ready:
            # Parts left by an earlier, killed run must not end up in this output.
            self._prune_parts(keep=set())
        _make_dir(parts / kind)
        return parts / kind / name

    def _prune_parts(self, keep: set[int]) -> None:
        parts = self.out_dir / _PARTS
        if parts.is_dir():
            for path in parts.rglob("*"):
                if path.is_file() and not (path.stem.isdigit() and int(path.stem) in keep and path.parent.name in ("alpha", "fg")):
                    path.unlink(missing_ok=True)
        self._parts_ready = True

    def _remove_parts(self) -> None:
        shutil.rmtree(self.out_dir / _PARTS, ignore_errors=True)
        self._parts_ready = False

    def _float_page(self, index: int, *, header_only: bool = False) -> np.ndarray:
        path = self.out_dir / _PARTS / "alpha" / f"{index:05d}.npy"
        try:
            page = np.load(path, mmap_mode="r" if header_only else None, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise InputError(f"cannot read the part {path} of frame {index}: {' '.join(str(exc).split())}") from exc
        if page.ndim != 2 or page.dtype != np.float32:
            raise InputError(f"the part {path} of frame {index} is not a float32 (H, W) alpha: {page.dtype} {page.shape}")
        return page

    def _stack_shapes(self) -> dict[int, tuple[int, int]]:
        return {i: tuple(self._float_page(i, header_only=True).shape) for i in self.written}

    def _assemble_tiff(self, dtype) -> None:
        import tifffile

        target = self.out_dir / "alpha.tif"
        if not self.overwrite and target.exists():
            raise InputError(f"output file exists: {target} (pass overwrite=True to replace it)")
        indices = self.written
        shapes_of = self._stack_shapes()
        shapes = set(shapes_of.values())
        itemsize = np.dtype(dtype).itemsize
        total = sum(itemsize * h * w for h, w in shapes_of.values())

        def pages() -> Iterator[np.ndarray]:
            for i in indices:  # one page in memory at a time
                page = self._float_page(i)
                yield alpha_to_uint16(page) if dtype == np.uint16 else page

        tmp = temp_name(target)
        with removed_on_failure(tmp, target):
            with tifffile.TiffWriter(tmp, bigtiff=total > _BIGTIFF_BYTES) as tif:
                if len(shapes) == 1:
                    ((h, w),) = shapes
                    tif.write(
                        pages(),
                        shape=(len(indices), h, w),
                        dtype=dtype,
                        photometric="minisblack",
                        metadata={"frame_indices": indices},
                    )
                else:
                    for i, page in zip(indices, pages()):
                        tif.write(page, photometric="minisblack", metadata={"frame_index": i})
            os.replace(tmp, target)

    def _assemble_zarr(self) -> None:
        target = self.out_dir / "alpha.zarr"
        if not self.overwrite and target.exists():
            raise InputError(f"output folder exists: {target} (pass overwrite=True to replace it)")
        pages = ((i, self._float_page(i)) for i in self.written)
        attributes = {"napari_iconmat": "alpha matte, float32 in [0, 1], one chunk per frame", "axes": "TYX"}
        write_zarr(target, pages, self._stack_shapes(), attributes=attributes)

    def _assemble_video(self, fmt: str) -> None:
        target = self.out_dir / VIDEO_FORMATS[fmt][0]
        if not self.overwrite and target.exists():
            raise InputError(f"output file exists: {target} (pass overwrite=True to replace it)")
        deep = "png16" in self.formats
        colour = "none (alpha only)" if fmt == "matte" else self.colour
        comment = f"napari-iconmat alpha matte; colour: {colour}; alpha: {'16' if deep else '8'}-bit source"

        def frames() -> Iterator[tuple[int, np.ndarray]]:
            for i in self.written:
                alpha = read_image(self.out_dir / "alpha" / f"{i:05d}.png")
                if fmt == "matte":
                    yield i, alpha
                    continue
                alpha16 = alpha.astype(np.uint16) * 257 if alpha.dtype == np.uint8 else alpha
                colour16 = read_image(self.out_dir / _PARTS / "fg" / f"{i:05d}.png")
                if self.colour == "premultiplied":
                    colour16 = np.rint(colour16 * (alpha16[..., None] / 65535.0)).astype(np.uint16)
                yield i, np.dstack([colour16, alpha16])

        write_video(target, fmt, frames(), timing=self.timing, deep=deep, metadata={"comment": comment})


def _check_index(index: Any) -> int:
    try:
        if isinstance(index, bool):
            raise TypeError
        value = int(index.__index__())
    except (TypeError, AttributeError):
        raise InputError(f"frame index must be an integer, got {index!r}") from None
    if value < 0:
        raise InputError(f"frame index must be >= 0, got {value}")
    return value


def _check_alpha(alpha: Any, index: int) -> np.ndarray:
    alpha = np.asarray(alpha)
    if alpha.ndim != 2:
        raise InputError(f"alpha of frame {index} must be a 2-D (H, W) array, got shape {alpha.shape}")
    if not np.issubdtype(alpha.dtype, np.floating):
        raise InputError(f"alpha of frame {index} must be float in [0, 1], got dtype {alpha.dtype}")
    if not np.isfinite(alpha).all():
        raise InputError(f"alpha of frame {index} holds {int((~np.isfinite(alpha)).sum())} NaN or infinite values")
    return alpha


def _check_foreground(foreground: Any, shape: tuple[int, ...], index: int) -> np.ndarray:
    if foreground is None:
        raise InputError(f"format 'rgba' needs the foreground colours of frame {index}; got foreground=None")
    foreground = np.asarray(foreground)
    if foreground.shape != (*shape, 3):
        raise InputError(f"foreground of frame {index} must have shape {(*shape, 3)}, got {foreground.shape}")
    if not np.issubdtype(foreground.dtype, np.floating) or not np.isfinite(foreground).all():
        raise InputError(f"foreground of frame {index} must be finite floats in [0, 1], got dtype {foreground.dtype}")
    return foreground


def _make_dir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InputError(f"output folder is a file: {directory}") from None
    except OSError as exc:
        raise InputError(f"cannot create output folder {directory}: {_why(exc)}") from exc


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a hidden temporary file and a rename.

    A killed process never leaves a half-written file under the final name.
    A symbolic link is followed (its target is replaced, the link kept), and a
    path that is not a regular file (``/dev/stdout``, a named pipe) is written
    in place. Raises InputError naming the path when it cannot be written.
    """
    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    if path.exists() and not path.is_file() and not path.is_dir():
        try:
            with open(path, "wb") as handle:
                handle.write(data)
        except OSError as exc:
            raise InputError(f"cannot write {path}: {_why(exc)}") from exc
        return path
    tmp = temp_name(path)
    try:
        # os.open with 0o666 lets the umask set the permissions (mkstemp would force 0o600).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        try:
            view = memoryview(data)
            while view:  # os.write may write less than asked
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        _remove(tmp)
        raise InputError(f"cannot write {path}: {_why(exc)}") from exc
    return path



def _atomic_write_npy(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    atomic_write_bytes(path, buffer.getbuffer())

"""Write alpha mattes: one PNG per frame, optional RGBA cut-outs and a float TIFF stack.

Every file is written under a temporary name in its final folder and renamed
into place, so a killed run never leaves a half-written file under a final
name. Layout of an output folder ``DIR``::

    DIR/alpha/00000.png ...   always; 8-bit, or 16-bit with "png16"
    DIR/rgba/00000.png ...    with "rgba": foreground colours + alpha, 8-bit RGBA
    DIR/alpha.tif             with "tiff": float32 alphas, one page per frame

File numbers are the frames' indices in the input, zero-padded to 5 digits.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterable, Iterator

import cv2
import numpy as np

from ..errors import InputError

__all__ = [
    "atomic_write_bytes",
    "FORMATS",
    "FORMAT_HELP",
    "OutputWriter",
    "alpha_to_uint16",
    "alpha_to_uint8",
    "atomic_write_png",
]

FORMATS = ("png", "png16", "rgba", "tiff")
FORMAT_HELP = {
    "png": "alpha/NNNNN.png: 8-bit grayscale alpha, one file per frame (always written)",
    "png16": "alpha/NNNNN.png written as 16-bit grayscale instead of 8-bit",
    "rgba": "rgba/NNNNN.png: estimated foreground colours with the alpha as an 8-bit RGBA cut-out",
    "tiff": "alpha.tif: float32 alphas in [0, 1], one page per frame in frame order",
}

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
        Any of {'png', 'png16', 'rgba', 'tiff'} (see ``FORMAT_HELP``).
        ``alpha/NNNNN.png`` is always written: 8-bit, 16-bit with 'png16'.
    overwrite : bool, default True
        If False, writing over an existing output file raises InputError.

    Attributes
    ----------
    out_dir : Path
        The output folder.
    formats : tuple of str
        The formats requested, without duplicates.

    Raises
    ------
    InputError
        If a format is unknown or ``out_dir`` is an existing file.

    Notes
    -----
    Frames may be written in any order (propagation runs forward, then
    backward). For 'tiff' each alpha is kept as ``.parts/NNNNN.npy`` until
    :meth:`close` assembles ``alpha.tif`` one page at a time, in index order,
    and deletes the parts. Frames of equal size form one (T, H, W) series;
    frames of different sizes are stored as one series per frame.

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
    ) -> None:
        if isinstance(formats, str):
            formats = (formats,)
        formats = tuple(dict.fromkeys(str(f).lower() for f in formats))
        unknown = [f for f in formats if f not in FORMATS]
        if unknown:
            raise InputError(f"unknown output format {unknown[0]!r}: choose from {', '.join(FORMATS)}")
        self.out_dir = Path(os.fspath(out_dir)).expanduser()
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise InputError(f"output folder is a file: {self.out_dir}")
        self.formats = formats or ("png",)
        self.overwrite = overwrite
        self._written: set[int] = set()
        self._shapes: dict[int, tuple[int, int]] = {}
        self._parts_ready = False
        self._closed = False

    @property
    def needs_foreground(self) -> bool:
        """True when 'rgba' is requested: :meth:`write` then needs ``foreground``."""
        return "rgba" in self.formats

    @property
    def written(self) -> list[int]:
        """Indices of the frames written so far, ascending."""
        return sorted(self._written)

    def write(self, index: int, alpha: np.ndarray, *, foreground: np.ndarray | None = None) -> list[Path]:
        """Write the outputs of one frame.

        Parameters
        ----------
        index : int
            The frame's index in the input (>= 0); names the files.
        alpha : (H, W) ndarray of float
            The alpha matte; finite, clipped to [0, 1] when quantised.
        foreground : (H, W, 3) ndarray of float in [0, 1], optional
            Estimated foreground colours (RGB); required when 'rgba' is
            requested, ignored otherwise.

        Returns
        -------
        paths : list of Path
            The per-frame files written (the alpha PNG, then the RGBA PNG).

        Raises
        ------
        InputError
            If the index, alpha or foreground is invalid, a file exists and
            ``overwrite`` is False, or a file cannot be written.
        """
        if self._closed:
            raise InputError(f"the writer for {self.out_dir} is closed; cannot write frame {index}")
        index = _check_index(index)
        alpha = _check_alpha(alpha, index)
        if self.needs_foreground:
            foreground = _check_foreground(foreground, alpha.shape, index)
        name = f"{index:05d}"
        paths = []

        alpha_png = self._target("alpha", f"{name}.png")
        alpha_q = alpha_to_uint16(alpha) if "png16" in self.formats else alpha_to_uint8(alpha)
        paths.append(atomic_write_png(alpha_png, alpha_q))

        if self.needs_foreground:
            rgba = np.dstack([alpha_to_uint8(foreground), alpha_to_uint8(alpha)])
            paths.append(atomic_write_png(self._target("rgba", f"{name}.png"), rgba))

        if "tiff" in self.formats:
            parts = self._parts_dir()
            _atomic_write_npy(parts / f"{name}.npy", alpha.astype(np.float32))
            self._shapes[index] = alpha.shape

        self._written.add(index)
        return paths

    def close(self) -> dict[str, Path]:
        """Finish the outputs: assemble the TIFF, delete temporary parts.

        Returns
        -------
        outputs : dict of str to Path
            What was written: ``'alpha'`` (folder of PNGs), ``'rgba'`` (folder)
            and ``'tiff'`` (file) for the formats requested; empty when no frame
            was written.

        Raises
        ------
        InputError
            If ``alpha.tif`` cannot be written (no temporary file is left).
        """
        outputs: dict[str, Path] = {}
        if self._written:
            outputs["alpha"] = self.out_dir / "alpha"
            if self.needs_foreground:
                outputs["rgba"] = self.out_dir / "rgba"
        if not self._closed and "tiff" in self.formats and self._written:
            self._assemble_tiff()
        if "tiff" in self.formats and self._written:
            outputs["tiff"] = self.out_dir / "alpha.tif"
        self._remove_parts()
        self._closed = True
        return outputs

    def discard(self) -> None:
        """Stop without assembling the TIFF (after a failed run); keep finished PNGs."""
        self._remove_parts()
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

    def _target(self, folder: str, name: str) -> Path:
        directory = self.out_dir / folder
        _make_dir(directory)
        path = directory / name
        if not self.overwrite and path.exists():
            raise InputError(f"output file exists: {path} (pass overwrite=True to replace it)")
        return path

    def _parts_dir(self) -> Path:
        parts = self.out_dir / ".parts"
        if not self._parts_ready:
            # Parts left by an earlier, killed run must not end up in this TIFF.
            if parts.exists():
                shutil.rmtree(parts, ignore_errors=True)
            _make_dir(parts)
            self._parts_ready = True
        return parts

    def _remove_parts(self) -> None:
        if self._parts_ready:
            shutil.rmtree(self.out_dir / ".parts", ignore_errors=True)
            self._parts_ready = False

    def _assemble_tiff(self) -> None:
        import tifffile

        target = self.out_dir / "alpha.tif"
        if not self.overwrite and target.exists():
            raise InputError(f"output file exists: {target} (pass overwrite=True to replace it)")
        indices = self.written
        shapes = {self._shapes[i] for i in indices}
        total = sum(4 * h * w for h, w in (self._shapes[i] for i in indices))
        parts = self.out_dir / ".parts"

        def pages() -> Iterator[np.ndarray]:
            for i in indices:  # one page in memory at a time
                yield np.load(parts / f"{i:05d}.npy")

        tmp = self.out_dir / f".alpha.tif.{uuid.uuid4().hex}.tmp"
        try:
            with tifffile.TiffWriter(tmp, bigtiff=total > _BIGTIFF_BYTES) as tif:
                if len(shapes) == 1:
                    ((h, w),) = shapes
                    tif.write(
                        pages(),
                        shape=(len(indices), h, w),
                        dtype=np.float32,
                        photometric="minisblack",
                        metadata={"frame_indices": indices},
                    )
                else:
                    for i, page in zip(indices, pages()):
                        tif.write(page, photometric="minisblack", metadata={"frame_index": i})
            os.replace(tmp, target)
        except OSError as exc:
            _unlink_quietly(tmp)
            raise InputError(f"cannot write {target}: {exc.strerror or exc}") from exc
        except BaseException:
            _unlink_quietly(tmp)
            raise


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
        raise InputError(f"cannot create output folder {directory}: {exc.strerror or exc}") from exc


def _temp_name(path: Path) -> Path:
    # Hidden and distinct per write: a crash leaves only dot-files nobody reads as output.
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a hidden temporary file and a rename.

    A killed process never leaves a half-written file under the final name.
    Raises InputError naming the path when it cannot be written.
    """
    path = Path(path)
    tmp = _temp_name(path)
    try:
        # os.open with 0o666 lets the umask set the permissions (mkstemp would force 0o600).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        _unlink_quietly(tmp)
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return path


def _atomic_write_npy(path: Path, array: np.ndarray) -> None:
    tmp = _temp_name(path)
    try:
        with open(tmp, "wb") as handle:
            np.save(handle, array)
        os.replace(tmp, path)
    except OSError as exc:
        _unlink_quietly(tmp)
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _unlink_quietly(path: Path) -> None:
    # Cleanup on an error path that is already reporting the real failure.
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass
